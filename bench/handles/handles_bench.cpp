// bench/handles: the price of the frozen check. is_frozen() per call; copying a
// boost::intrusive_ptr to a permafrost::refcounted object (mutable and frozen) against a plain
// intrusive count (boost::intrusive_ref_counter); copying share() handles against shared_ptr.
// One process, rounds interleaved, medians of ns per operation.
#include <permafrost/ref.hpp>

#include <boost/intrusive_ptr.hpp>
#include <boost/smart_ptr/intrusive_ref_counter.hpp>

#include <functional>
#include <map>
#include <memory>
#include <random>

#include "../common/harness.hpp"

namespace {

struct plain : boost::intrusive_ref_counter<plain, boost::thread_safe_counter> {
  std::uint64_t value = 1;
};
struct counted : permafrost::refcounted<counted> {
  std::uint64_t value = 1;
};

template <class Ptr>
[[gnu::noinline]] std::uint64_t copy_all(const std::vector<Ptr>& v) {
  std::uint64_t sum = 0;
  for (const auto& p : v) {
    Ptr c = p;  // one count up, one down
    sum += c->value;
  }
  return sum;
}

[[gnu::noinline]] std::uint64_t check_all(const std::vector<const void*>& v) {
  std::uint64_t n = 0;
  for (const void* p : v) n += permafrost::is_frozen(p);
  return n;
}

[[gnu::noinline]] std::uint64_t null_check_all(const std::vector<const void*>& v) {
  std::uint64_t n = 0;
  for (const void* p : v) n += p != nullptr;
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  const bool smoke = bench::has_flag(argc, argv, "--smoke");
  const int rounds = std::atoi(bench::flag_value(argc, argv, "--rounds", smoke ? "1" : "11"));
  const std::size_t n = smoke ? 20'000 : 1'000'000;

  permafrost::arena_options o;
  o.name = "bench-handles";
  permafrost::arena frozen_arena(o);
  std::vector<boost::intrusive_ptr<plain>> plains;
  std::vector<boost::intrusive_ptr<counted>> mutables;
  std::vector<boost::intrusive_ptr<counted>> frozens;
  std::vector<std::shared_ptr<const counted>> shareds;
  std::vector<std::shared_ptr<const counted>> shares;
  for (std::size_t i = 0; i < n; ++i) {
    plains.emplace_back(new plain);
    mutables.emplace_back(new counted);
    frozens.emplace_back(frozen_arena.make<counted>());
    shareds.push_back(std::make_shared<const counted>());
  }
  frozen_arena.freeze();
  for (auto& f : frozens) shares.push_back(permafrost::share(f.get()));
  // Pointers for is_frozen: half frozen, half heap, shuffled.
  std::vector<const void*> probes;
  for (std::size_t i = 0; i < n; ++i)
    probes.push_back(i % 2 ? static_cast<const void*>(frozens[i].get()) : mutables[i].get());
  std::shuffle(probes.begin(), probes.end(), std::mt19937(42));

  const std::vector<std::pair<std::string, std::function<std::uint64_t()>>> cases{
      {"loop baseline (p != nullptr)", [&] { return null_check_all(probes); }},
      {"is_frozen(p)", [&] { return check_all(probes); }},
      {"intrusive_ptr copy, plain count (boost::intrusive_ref_counter)",
       [&] { return copy_all(plains); }},
      {"intrusive_ptr copy, refcounted<T>, mutable object", [&] { return copy_all(mutables); }},
      {"intrusive_ptr copy, refcounted<T>, frozen object", [&] { return copy_all(frozens); }},
      {"shared_ptr copy, make_shared object", [&] { return copy_all(shareds); }},
      {"shared_ptr copy, share() of a frozen object", [&] { return copy_all(shares); }},
      {"share(p) (make a handle)",
       [&] {
    std::uint64_t s = 0;
    for (const auto& f : frozens) s += permafrost::share(f.get())->value;
    return s;
       }},
      };
  std::map<std::string, std::vector<double>> samples;
  for (int r = 0; r < rounds; ++r) {
    for (const auto& [name, fn] : cases) {
      const double t0 = bench::now_ns();
      const std::uint64_t v = fn();
      samples[name].push_back((bench::now_ns() - t0) / static_cast<double>(n));
      bench::keep(v);
    }
  }
  bench::print_header("handles: ns per operation (median of interleaved runs, one thread)", argc,
                      argv);
  std::printf("%zu objects (or pointers) per run, %d rounds; copies include the release\n\n", n,
              rounds);
  const double plain_ns = bench::median(samples[cases[2].first]);
  std::printf("| operation | ns | vs plain intrusive count |\n|---|---|---|\n");
  for (const auto& [name, fn] : cases) {
    const double m = bench::median(samples[name]);
    std::printf("| %s | %.2f | %.2fx |\n", name.c_str(), m, m / plain_ns);
  }
  return 0;
}
