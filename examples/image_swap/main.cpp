// examples/image_swap — replacing a table while requests read it, with frozen images.
//
// A server keeps its current table as a std::shared_ptr<const permafrost::image>, published
// under a mutex (std::atomic<std::shared_ptr> does the same job; libstdc++ 12's is reported by
// ThreadSanitizer, so the example stays with the mutex). Each request copies the pointer once and
// reads only that image, so it sees one version from start to end. A reload builds the next
// version, saves it over the same path (save_image renames atomically, so the old image's open
// mapping is untouched), opens it and stores it; the old image is unmapped when the last request
// holding it finishes.
//
// Here 2 reader threads serve "requests" (a handful of lookups each, checking that every value of
// a request comes from the same version) while the main thread publishes versions 2..N. The
// program checks that no request saw two versions, that every old image was unmapped once its
// readers were done, and that /proc/self/maps holds one mapping of the image at the end.
//
// Usage: image_swap [--keys N] [--versions V] [--dir DIR]
//   defaults: 100,000 keys, 5 versions, a fresh directory under /tmp
// Exit status 0 when every check passed.
#include <permafrost/containers.hpp>
#include <permafrost/image.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

namespace {

using table = permafrost::hash_map<permafrost::string, permafrost::string>;

std::string key_of(std::size_t i) { return "sku-" + std::to_string(i); }
std::string value_of(std::size_t i, int version) {
  return "v" + std::to_string(version) + ":price-" + std::to_string(i * 7 % 1000);
}

// Builds version `version` of the table and saves it to `path` (replacing what is there).
void build_and_save(const std::filesystem::path& path, std::size_t keys, int version) {
  permafrost::arena a;
  permafrost::hash_map_builder<permafrost::string, permafrost::string> b(a);
  for (std::size_t i = 0; i < keys; ++i) b.insert(key_of(i), value_of(i, version));
  const table& t = b.finish();
  a.freeze();
  permafrost::save_image(a, t, path, {.metadata = "version " + std::to_string(version)});
}

// The current image: readers take a reference, the reloader swaps in a newer one.
class current_image {
 public:
  explicit current_image(std::shared_ptr<const permafrost::image> first) : img_(std::move(first)) {}
  std::shared_ptr<const permafrost::image> get() const {
    std::lock_guard lock(mu_);
    return img_;
  }
  // Returns the image replaced; it is unmapped when the last reader holding it lets go.
  std::shared_ptr<const permafrost::image> exchange(std::shared_ptr<const permafrost::image> next) {
    std::lock_guard lock(mu_);
    img_.swap(next);
    return next;
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const permafrost::image> img_;
};

int mappings_of(const std::filesystem::path& path) {
  std::ifstream maps("/proc/self/maps");
  int n = 0;
  for (std::string line; std::getline(maps, line);)
    if (line.find(path.string()) != std::string::npos) ++n;
  return n;
}

}  // namespace

PERMAFROST_IMAGE_TYPE(table, "permafrost.examples.image_swap.v1");

int main(int argc, char** argv) {
  std::size_t keys = 100'000;
  int versions = 5;
  std::filesystem::path dir;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--keys" && i + 1 < argc) keys = std::strtoull(argv[++i], nullptr, 10);
    else if (arg == "--versions" && i + 1 < argc) versions = std::atoi(argv[++i]);
    else if (arg == "--dir" && i + 1 < argc) dir = argv[++i];
    else {
      std::fprintf(stderr, "usage: image_swap [--keys N] [--versions V] [--dir DIR]\n");
      return 2;
    }
  }
  if (keys < 1 || versions < 2) {
    std::fprintf(stderr, "image_swap: need at least one key and two versions\n");
    return 2;
  }
  bool made_dir = false;
  if (dir.empty()) {
    char tmpl[] = "/tmp/permafrost-image-swap-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) {
      std::perror("mkdtemp");
      return 1;
    }
    dir = tmpl;
    made_dir = true;
  }
  const std::filesystem::path path = dir / "prices.pfi";

  try {
    build_and_save(path, keys, 1);
    current_image current(std::make_shared<const permafrost::image>(permafrost::image::open(path)));

    std::atomic<bool> stop{false};
    std::atomic<long> requests{0}, mixed{0}, missing{0};
    std::vector<std::thread> readers;
    for (int r = 0; r < 2; ++r) {
      readers.emplace_back([&, r] {
        std::size_t i = static_cast<std::size_t>(r) * 7919;
        while (!stop.load(std::memory_order_relaxed)) {
          // One request: one image for all its lookups, however long it takes.
          const std::shared_ptr<const permafrost::image> img = current.get();
          const table& t = img->root<table>();
          std::string version;
          for (int k = 0; k < 8; ++k, i = (i + 104729) % keys) {
            const permafrost::string* v = t.get(key_of(i));
            if (v == nullptr) {
              missing.fetch_add(1);
              continue;
            }
            const std::string_view tag = v->view().substr(0, v->view().find(':'));
            if (version.empty()) version = tag;
            else if (tag != version) mixed.fetch_add(1);
          }
          requests.fetch_add(1, std::memory_order_relaxed);
        }
      });
    }

    std::vector<std::weak_ptr<const permafrost::image>> retired;
    for (int version = 2; version <= versions; ++version) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));  // requests run meanwhile
      const auto t0 = std::chrono::steady_clock::now();
      build_and_save(path, keys, version);  // renames over the path the current image came from
      auto next = std::make_shared<const permafrost::image>(permafrost::image::open(path));
      const auto t1 = std::chrono::steady_clock::now();
      retired.push_back(
          current.exchange(std::move(next)));  // the old one dies with its last reader
      std::printf(
          "published version %d (%s) after %.1f ms of build+save+open; %ld requests so far\n",
          version, std::string(current.get()->metadata()).c_str(),
          std::chrono::duration<double, std::milli>(t1 - t0).count(), requests.load());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    stop = true;
    for (auto& t : readers) t.join();

    std::size_t alive = 0;
    for (const auto& w : retired) alive += w.expired() ? 0 : 1;
    const int mapped = mappings_of(path);
    const bool pass = mixed == 0 && missing == 0 && requests > 0 && alive == 0 && mapped == 1;
    std::printf(
        "%s: %ld requests, %ld saw two versions, %ld lookups missed; old images still mapped: %zu; "
        "mappings of %s now: %d\n",
        pass ? "PASS" : "FAIL", requests.load(), mixed.load(), missing.load(), alive,
        path.filename().c_str(), mapped);
    (void)current.exchange(nullptr);
    if (made_dir) std::filesystem::remove_all(dir);
    return pass ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "image_swap: %s\n", e.what());
    if (made_dir) std::filesystem::remove_all(dir);
    return 1;
  }
}
