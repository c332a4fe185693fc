// rss_savings — the main demonstration: one static table held five ways (plus CPython), forked
// into N workers, measured from outside with permafrost's memstat while every process is alive.
//
//   rss_savings                 quick mode: ~256 MiB (1M rows), 4 workers       (scripts/demo)
//   rss_savings --full          ~512 MiB (2M rows), 1, 2, 4, 8, 16 workers
//   rss_savings --smoke         tiny, for ctest
//   options: --rows N  --workers N[,N...]  --churn-mib N  --variants a,b,c,d,e,py,pyf,pyn
//            --out DIR
//
// Each variant runs in its own process (worker_host.hpp protocol): glibc variants must not be
// linked with Debian's libmimalloc.so, which replaces malloc process-wide. This driver links only
// permafrost (memstat) and never allocates the table itself.
//
// Writes DIR/rss_savings.csv and DIR/rss_savings.svg (gnuplot, when installed), prints the
// table on stdout and progress on stderr. Exit: 0 ok, 1 a variant failed, 2 bad arguments.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include <permafrost/memstat.hpp>

namespace fs = std::filesystem;

namespace {

constexpr double mib = 1024.0 * 1024.0;

struct variant {
  std::string id;
  std::string label;
  std::string binary;  // next to this executable; "python" for the CPython row
  std::string arg;     // --variant value, if the binary holds several
  bool churn;
};

const std::vector<variant> all_variants = {
    {"a", "(a) std+shared_ptr, glibc", "rss_savings_glibc", "shared_ptr", false},
    {"b", "(b) std, glibc, history+churn", "rss_savings_glibc", "std", true},
    {"c", "(c) std, mimalloc, history+churn", "rss_savings_mimalloc", "std", true},
    {"d", "(d) Boost.Interprocess shm, churn", "rss_savings_boost", "", true},
    {"e", "(e) permafrost arena+heap, churn", "rss_savings_permafrost", "", true},
    {"py", "CPython dict, gc.freeze()", "python", "", false},
    {"pyf", "CPython permafrost.freeze()", "python", "--permafrost", false},
    {"pyn", "CPython permafrost.freeze_native()", "python", "--native", false},
};

struct config {
  std::size_t rows = 1'000'000;
  std::vector<int> workers{4};
  std::size_t churn_mib = 50;
  std::vector<std::string> variants{"a", "b", "c", "d", "e", "py", "pyf", "pyn"};
  std::string out = "results";
  std::string mode = "quick";
  std::string python_script = RSS_PYTHON_SCRIPT;
};

struct result {
  const variant* v = nullptr;
  int workers = 0;
  bool ok = false;
  std::string note;
  double parent_rss = 0, worker_uss = 0, total_pss = 0, ideal_pss = 0, table_bytes = 0;
  double shared_fraction = 0, build_ms = 0, freeze_ms = -1, fork_ms = 0, lookup_ns = 0;
  bool frames_compared = false;
};

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr,
               "rss_savings: %s\nusage: rss_savings [--full | --smoke] [--rows N] "
               "[--workers N[,N...]] [--churn-mib N] [--variants a,b,c,d,e,py] [--out DIR] "
               "[--python-script PATH]\n",
               msg);
  std::exit(2);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, sep);)
    if (!part.empty()) out.push_back(part);
  return out;
}

config parse(int argc, char** argv) {
  config c;
  bool rows_set = false, workers_set = false;
  std::size_t rows = 0;
  std::vector<int> workers;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage((a + " needs a value").c_str());
      return argv[++i];
    };
    if (a == "--full") c.mode = "full";
    else if (a == "--smoke") c.mode = "smoke";
    else if (a == "--quick") c.mode = "quick";
    else if (a == "--rows") {
      rows = std::strtoull(next().c_str(), nullptr, 10);
      rows_set = true;
    } else if (a == "--workers") {
      for (const auto& w : split(next(), ',')) workers.push_back(std::atoi(w.c_str()));
      workers_set = true;
    } else if (a == "--churn-mib") c.churn_mib = std::strtoull(next().c_str(), nullptr, 10);
    else if (a == "--variants") c.variants = split(next(), ',');
    else if (a == "--out") c.out = next();
    else if (a == "--python-script") c.python_script = next();
    else if (a == "-h" || a == "--help") usage("help");
    else usage(("unknown option " + a).c_str());
  }
  if (c.mode == "full") {
    c.rows = 2'000'000;
    c.workers = {1, 2, 4, 8, 16};
  } else if (c.mode == "smoke") {
    c.rows = 20'000;
    c.workers = {2};
    c.churn_mib = 2;
  }
  if (rows_set) c.rows = rows;
  if (workers_set) c.workers = workers;
  if (c.rows == 0) usage("--rows must be positive");
  for (int w : c.workers)
    if (w < 1 || w > 256) usage("--workers must be in 1..256");
  for (const auto& id : c.variants)
    if (std::none_of(all_variants.begin(), all_variants.end(),
                     [&](const variant& v) { return v.id == id; }))
      usage(("unknown variant " + id).c_str());
  return c;
}

std::optional<std::string> find_in_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  for (const auto& dir : split(path ? path : "/usr/bin:/bin", ':')) {
    const std::string p = dir + "/" + name;
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return std::nullopt;
}

double mem_available() {
  std::ifstream in("/proc/meminfo");
  for (std::string key; in >> key;) {
    double kib = 0;
    in >> kib;
    if (key == "MemAvailable:") return kib * 1024;
    in.ignore(INT_MAX, '\n');
  }
  return 0;
}

// A running variant process: its stdin and stdout are pipes to us, stderr is ours.
struct child_process {
  pid_t pid = -1;
  FILE* out = nullptr;  // its stdout
  int in = -1;          // its stdin

  static child_process spawn(const std::vector<std::string>& argv) {
    int to[2], from[2];
    if (::pipe(to) != 0 || ::pipe(from) != 0) throw std::runtime_error("pipe failed");
    std::fflush(nullptr);
    child_process c;
    c.pid = ::fork();
    if (c.pid < 0) throw std::runtime_error("fork failed");
    if (c.pid == 0) {
      ::dup2(to[0], 0);
      ::dup2(from[1], 1);
      ::close(to[0]);
      ::close(to[1]);
      ::close(from[0]);
      ::close(from[1]);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      std::fprintf(stderr, "rss_savings: cannot run %s: %s\n", args[0], std::strerror(errno));
      std::_Exit(127);
    }
    ::close(to[0]);
    ::close(from[1]);
    c.in = to[1];
    c.out = ::fdopen(from[0], "r");
    return c;
  }

  // Releases the variant (closing its stdin) and returns its exit status.
  int finish() {
    if (in >= 0) {
      (void)!::write(in, "go\n", 3);
      ::close(in);
      in = -1;
    }
    if (out != nullptr) {
      std::fclose(out);
      out = nullptr;
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    return status;
  }
};

std::map<std::string, std::string> parse_ready(const std::string& line) {
  std::map<std::string, std::string> kv;
  std::stringstream in(line);
  std::string word;
  in >> word;  // READY
  while (in >> word) {
    const auto eq = word.find('=');
    if (eq != std::string::npos) kv[word.substr(0, eq)] = word.substr(eq + 1);
  }
  return kv;
}

using range = std::span<const std::byte>;

range make_range(std::uintptr_t b, std::uintptr_t e) {
  return {reinterpret_cast<const std::byte*>(b), e - b};
}

// The parent's private anonymous data: the allocator's heap, arenas and mmapped chunks. A page
// of these that a worker maps privately is a copy that sharing should have avoided.
std::vector<range> data_ranges(pid_t parent) {
  std::vector<range> out;
  for (const auto& m : permafrost::mappings(parent)) {
    const bool anon = m.name.empty() || m.name == "[heap]" || m.name.rfind("[anon:", 0) == 0;
    if (anon && m.perms.size() == 4 && m.perms[0] == 'r' && m.perms[3] == 'p' && m.usage.rss > 0)
      out.push_back(make_range(m.begin, m.end));
  }
  return out;
}

std::vector<range> parse_ranges(const std::string& s) {
  std::vector<range> out;
  for (const auto& part : split(s, ',')) {
    const auto dash = part.find('-');
    out.push_back(make_range(std::stoull(part.substr(0, dash), nullptr, 16),
                             std::stoull(part.substr(dash + 1), nullptr, 16)));
  }
  return out;
}

struct audit_total {
  std::size_t parent_present = 0, copied = 0;
  bool frames = false;
};

audit_total audit(pid_t worker, pid_t parent, const std::vector<range>& ranges) {
  audit_total t;
  for (const range& r : ranges) {
    const auto rep = permafrost::sharing_audit(worker, parent, r);
    t.parent_present += rep.parent_present;
    t.copied += rep.copied;
    t.frames = rep.frames_compared;
  }
  return t;
}

// The interpreter and package directory (python/CMakeLists.txt builds them) a CPython row that
// uses permafrost runs with, or what is missing.
struct python_package {
  const char* interpreter = nullptr;
  const char* package = nullptr;
  const char* missing = nullptr;
};

python_package package_for(const std::string& arg) {
  python_package p;
  if (arg == "--native") {  // freeze_native() needs CPython 3.12 or 3.13: pyenv's newest
#ifdef RSS_PYTHON_NATIVE_PACKAGE
    p = {RSS_PYTHON_FOR_NATIVE, RSS_PYTHON_NATIVE_PACKAGE, nullptr};
#else
    p.missing = "no CPython 3.12 or 3.13 with the package built (freeze_native)";
#endif
  } else {  // the package built for the system python3
#ifdef RSS_PYTHON_PACKAGE
    p = {RSS_PYTHON_FOR_PACKAGE, RSS_PYTHON_PACKAGE, nullptr};
#else
    p.missing = "the Python package is not built (PERMAFROST_BUILD_PYTHON=OFF)";
#endif
  }
  return p;
}

result run_one(const config& c, const variant& v, int workers, const std::string& bin_dir,
               const std::optional<std::string>& python) {
  result r;
  r.v = &v;
  r.workers = workers;
  std::vector<std::string> argv;
  if (v.binary == "python") {
    if (!python) {
      r.note = "skipped: python3 not found";
      return r;
    }
    argv = {*python, c.python_script};
    if (!v.arg.empty()) {
      const python_package p = package_for(v.arg);
      if (p.missing != nullptr) {
        r.note = std::string("skipped: ") + p.missing;
        return r;
      }
      ::setenv("PYTHONPATH", p.package, 1);
      argv = {p.interpreter, c.python_script, v.arg};
    }
  } else {
    argv = {bin_dir + "/" + v.binary};
    if (!v.arg.empty()) argv.insert(argv.end(), {"--variant", v.arg});
    argv.insert(argv.end(), {"--churn-mib", std::to_string(v.churn ? c.churn_mib : 0)});
  }
  argv.insert(argv.end(), {"--rows", std::to_string(c.rows), "--workers", std::to_string(workers)});

  child_process proc = child_process::spawn(argv);
  char buf[4096];
  std::string line;
  while (std::fgets(buf, sizeof buf, proc.out) != nullptr) {
    line = buf;
    if (line.rfind("READY ", 0) == 0) break;
    line.clear();
  }
  if (line.empty()) {
    const int status = proc.finish();
    r.note = "failed: exited without READY (status " + std::to_string(status) + ")";
    return r;
  }
  const auto kv = parse_ready(line);
  const pid_t parent = std::atoi(kv.at("parent").c_str());
  std::vector<pid_t> pids;
  for (const auto& p : split(kv.at("workers"), ',')) pids.push_back(std::atoi(p.c_str()));

  // Everything is alive and idle: measure.
  const auto pm = permafrost::process_memory(parent);
  double total_pss = static_cast<double>(pm.pss);
  // File and shared-memory pages count as they are (their sharing with the rest of the system is
  // not what this measures); anonymous memory ideally is the parent's, once, plus what each
  // worker allocates for itself.
  double not_anon = static_cast<double>(pm.pss_file + pm.pss_shmem);
  std::vector<double> uss;
  const auto data = data_ranges(parent);
  const bool auto_table = kv.at("table") == "auto";
  const auto table = auto_table ? data : parse_ranges(kv.at("table"));
  double own_private = 0;
  std::size_t table_present = 0, table_copied = 0;
  for (pid_t w : pids) {
    const auto wm = permafrost::process_memory(w);
    total_pss += static_cast<double>(wm.pss);
    not_anon += static_cast<double>(wm.pss_file + wm.pss_shmem);
    uss.push_back(static_cast<double>(wm.uss));
    const audit_total d = audit(w, parent, data);
    const audit_total t = auto_table ? d : audit(w, parent, table);
    table_present += t.parent_present;
    table_copied += t.copied;
    r.frames_compared = d.frames;
    own_private += std::max(
        0.0, static_cast<double>(wm.uss) -
                 static_cast<double>(d.copied * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE))));
  }
  const int status = proc.finish();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    r.note = "failed: exit status " + std::to_string(status);
    return r;
  }
  std::sort(uss.begin(), uss.end());
  r.ok = true;
  r.parent_rss = static_cast<double>(pm.rss);
  r.worker_uss = uss[uss.size() / 2];
  r.total_pss = total_pss;
  r.ideal_pss = not_anon + static_cast<double>(pm.anonymous) + own_private;
  r.shared_fraction =
      table_present ? 1.0 - static_cast<double>(table_copied) / static_cast<double>(table_present)
                    : 1.0;
  r.table_bytes = std::atof(kv.at("table_bytes").c_str());
  r.build_ms = std::atof(kv.at("build_ms").c_str());
  r.freeze_ms = std::atof(kv.at("freeze_ms").c_str());
  r.fork_ms = std::atof(kv.at("fork_ms").c_str());
  r.lookup_ns = std::atof(kv.at("lookup_ns").c_str());
  return r;
}

void print_table(const std::vector<result>& results, std::FILE* f) {
  std::fprintf(f, "%-34s %3s %9s %9s %10s %10s %7s %7s %8s %7s %7s %7s %7s\n", "variant", "W",
               "parentRSS", "workerUSS", "total PSS", "ideal PSS", "/ideal", "vs (e)", "shared",
               "build s", "frz ms", "fork ms", "lkp ns");
  for (const result& r : results) {
    if (!r.ok) {
      std::fprintf(f, "%-34s %3d %s\n", r.v->label.c_str(), r.workers, r.note.c_str());
      continue;
    }
    double vs_e = NAN;
    for (const result& e : results)
      if (e.ok && e.v->id == "e" && e.workers == r.workers) vs_e = r.total_pss / e.total_pss;
    char frz[16] = "-";
    if (r.freeze_ms >= 0) std::snprintf(frz, sizeof frz, "%.1f", r.freeze_ms);
    std::fprintf(
        f, "%-34s %3d %7.1f M %7.2f M %8.1f M %8.1f M %6.3f %6.1fx %6.1f%% %8.2f %7s %7.1f %7.0f\n",
        r.v->label.c_str(), r.workers, r.parent_rss / mib, r.worker_uss / mib, r.total_pss / mib,
        r.ideal_pss / mib, r.total_pss / r.ideal_pss, vs_e, 100.0 * r.shared_fraction,
        r.build_ms / 1000, frz, r.fork_ms, r.lookup_ns);
  }
}

void write_csv(const config& c, const std::vector<result>& results, const fs::path& path) {
  std::ofstream out(path);
  out << "mode,variant,label,workers,rows,ok,parent_rss_mib,worker_uss_mib,total_pss_mib,"
         "ideal_pss_mib,pss_over_ideal,table_mib,table_shared_pct,build_ms,freeze_ms,fork_ms,"
         "lookup_ns,frames_compared,note\n";
  for (const result& r : results) {
    char line[512];
    std::snprintf(
        line, sizeof line,
        "%s,%s,\"%s\",%d,%zu,%d,%.2f,%.3f,%.2f,%.2f,%.4f,%.2f,%.3f,%.1f,%.2f,%.2f,%.1f,%d,\"%s\"\n",
        c.mode.c_str(), r.v->id.c_str(), r.v->label.c_str(), r.workers, c.rows, r.ok ? 1 : 0,
        r.parent_rss / mib, r.worker_uss / mib, r.total_pss / mib, r.ideal_pss / mib,
        r.ok ? r.total_pss / r.ideal_pss : 0.0, r.table_bytes / mib, 100.0 * r.shared_fraction,
        r.build_ms, r.freeze_ms, r.fork_ms, r.lookup_ns, r.frames_compared ? 1 : 0, r.note.c_str());
    out << line;
  }
}

// Fixed colours, permafrost's the strongest, so plots of different runs read alike.
const char* color_of(const std::string& id) {
  if (id == "a") return "#7b3294";
  if (id == "b") return "#009e73";
  if (id == "c") return "#56b4e9";
  if (id == "d") return "#e69f00";
  if (id == "e") return "#d7191c";
  if (id == "pyf") return "#cc79a7";
  if (id == "pyn") return "#f0e442";
  return "#0072b2";
}

// Runs gnuplot on `gp`, or says why there is no plot.
void run_gnuplot(const fs::path& gp) {
  const auto gnuplot = find_in_path("gnuplot");
  if (!gnuplot) {
    std::fprintf(stderr, "rss_savings: gnuplot not found, no plot (script: %s)\n", gp.c_str());
    return;
  }
  const std::string cmd = *gnuplot + " '" + gp.string() + "'";
  if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "rss_savings: gnuplot failed\n");
}

// One worker count: a bar per variant (its total PSS) with the ideal marked on it. Lines over a
// single x value would be a column of points.
void write_bars(const config& c, const std::vector<result>& results, const fs::path& dir) {
  const fs::path dat = dir / "rss_savings.dat";
  const fs::path gp = dir / "rss_savings.gp";
  std::ofstream d(dat);
  int n = 0;
  for (const auto& id : c.variants) {
    for (const result& r : results) {
      if (r.v->id != id || !r.ok) continue;
      d << n++ << " \"" << r.v->label << "\" " << r.total_pss / mib << ' ' << r.ideal_pss / mib
        << ' ' << std::stoul(std::string(color_of(id)).substr(1), nullptr, 16) << '\n';
    }
  }
  d.close();
  if (n == 0) return;
  std::ofstream g(gp);
  g << "set terminal svg size 1100,560 dynamic noenhanced font 'sans,12'\n"
    << "set output '" << (dir / "rss_savings.svg").string() << "'\n"
    << "set title 'Total PSS of parent + " << c.workers.front() << " workers, " << c.rows
    << " rows (" << c.mode << " mode)'\n"
    << "set ylabel 'total PSS (MiB)'\nset grid ytics\nset yrange [0:*]\n"
    << "set style fill solid 0.85 noborder\nset boxwidth 0.6\nset xrange [-0.6:" << n - 0.4
    << "]\nset xtics rotate by -20 left\nset bmargin 8\nset key top left\n"
    << "plot '" << dat.string() << "' using 1:3:5:xtic(2) with boxes lc rgb variable notitle, \\\n"
    << "     '' using 1:4 with points pt 7 ps 1.2 lc rgb 'black' title 'ideal PSS (table once + "
       "private bytes)'\n";
  g.close();
  run_gnuplot(gp);
}

void write_plot(const config& c, const std::vector<result>& results, const fs::path& dir) {
  if (c.workers.size() == 1) return write_bars(c, results, dir);
  const fs::path dat = dir / "rss_savings.dat";
  const fs::path gp = dir / "rss_savings.gp";
  std::ofstream d(dat);
  std::vector<const variant*> plotted;
  for (const auto& id : c.variants) {
    const variant* v = nullptr;
    for (const auto& x : all_variants)
      if (x.id == id) v = &x;
    bool any = false;
    for (const result& r : results) {
      if (r.v != v || !r.ok) continue;
      d << r.workers << ' ' << r.total_pss / mib << '\n';
      any = true;
    }
    if (any) {
      d << "\n\n";
      plotted.push_back(v);
    }
  }
  d.close();
  if (plotted.empty()) return;
  std::ofstream g(gp);
  g << "set terminal svg size 1100,560 dynamic noenhanced font 'sans,12'\n"
    << "set output '" << (dir / "rss_savings.svg").string() << "'\n"
    << "set title 'Total PSS of parent + workers, " << c.rows << " rows (" << c.mode << " mode)'\n"
    << "set xlabel 'workers'\nset ylabel 'total PSS (MiB)'\nset logscale y\nset grid\n"
    << "set key outside right top\nset xrange ["
    << (*std::min_element(c.workers.begin(), c.workers.end()) - 0.5) << ":"
    << (*std::max_element(c.workers.begin(), c.workers.end()) + 0.5) << "]\nset xtics (";
  for (std::size_t i = 0; i < c.workers.size(); ++i) g << (i ? "," : "") << c.workers[i];
  g << ")\n"
    << "plot ";
  for (std::size_t i = 0; i < plotted.size(); ++i)
    g << (i ? ", \\\n     " : "") << "'" << dat.string() << "' index " << i
      << " using 1:2 with linespoints lw 2 lc rgb '" << color_of(plotted[i]->id) << "' title '"
      << plotted[i]->label << "'";
  g << "\n";
  g.close();
  run_gnuplot(gp);
}

void print_goal(const std::vector<result>& results) {
  int w = 0;
  for (const result& r : results)
    if (r.ok && r.v->id == "e") w = std::max(w, r.workers);
  const result* e = nullptr;
  const result* a = nullptr;
  const result* py = nullptr;
  for (const result& r : results) {
    if (!r.ok || r.workers != w) continue;
    if (r.v->id == "e") e = &r;
    if (r.v->id == "a") a = &r;
    if (r.v->id == "py") py = &r;
  }
  if (e == nullptr) return;
  std::printf("\nat %d workers: permafrost total PSS %.1f MiB = %.2f%% %s the ideal %.1f MiB "
              "(file/shmem PSS + the parent's anonymous memory once + workers' own private bytes)",
              w, e->total_pss / mib, 100.0 * std::fabs(e->total_pss / e->ideal_pss - 1),
              e->total_pss >= e->ideal_pss ? "above" : "below", e->ideal_pss / mib);
  if (a != nullptr) std::printf("; %.1fx below (a)", a->total_pss / e->total_pss);
  if (py != nullptr) std::printf("; %.1fx below CPython", py->total_pss / e->total_pss);
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  const config c = parse(argc, argv);
  std::error_code ec;
  const std::string bin_dir = fs::read_symlink("/proc/self/exe", ec).parent_path().string();
  const auto python = find_in_path("python3");
  fs::create_directories(c.out, ec);
  if (ec) usage(("cannot create " + c.out + ": " + ec.message()).c_str());

  std::vector<result> results;
  std::map<std::string, result> last;  // per variant, for the memory guard
  bool failed = false;
  const auto t0 = std::chrono::steady_clock::now();
  for (int w : c.workers) {
    for (const auto& id : c.variants) {
      const variant& v = *std::find_if(all_variants.begin(), all_variants.end(),
                                       [&](const variant& x) { return x.id == id; });
      // Do not push the machine into the OOM killer: project from the last run of this variant.
      if (auto it = last.find(id); it != last.end() && it->second.ok) {
        const double need = it->second.parent_rss * 1.1 + w * (it->second.worker_uss + 8 * mib);
        if (need > 0.8 * mem_available()) {
          result skipped;
          skipped.v = &v;
          skipped.workers = w;
          skipped.note = "skipped: would need ~" + std::to_string(static_cast<int>(need / mib)) +
                         " MiB, more than 80% of MemAvailable";
          std::fprintf(stderr, "[rss_savings] %s, %d workers: %s\n", v.label.c_str(), w,
                       skipped.note.c_str());
          results.push_back(skipped);
          continue;
        }
      }
      std::fprintf(stderr, "[rss_savings %5.1fs] %s, %zu rows, %d workers ...\n",
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                   v.label.c_str(), c.rows, w);
      result r;
      try {
        r = run_one(c, v, w, bin_dir, python);
      } catch (const std::exception& ex) {
        r.v = &v;
        r.workers = w;
        r.note = std::string("failed: ") + ex.what();
      }
      if (!r.ok && r.note.rfind("skipped", 0) != 0) failed = true;
      if (!r.ok) std::fprintf(stderr, "[rss_savings] %s: %s\n", v.label.c_str(), r.note.c_str());
      last[id] = r;
      results.push_back(r);
      write_csv(c, results, fs::path(c.out) / "rss_savings.csv");  // a long run keeps what it has
    }
  }
  std::fprintf(stderr, "[rss_savings %5.1fs] done\n",
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());

  std::printf(
      "rss_savings (%s mode): %zu rows, churn %zu MiB per worker; sizes in MiB; "
      "shared = share of the parent's table pages not copied by workers (%s)\n\n",
      c.mode.c_str(), c.rows, c.churn_mib,
      std::any_of(results.begin(), results.end(), [](const result& r) { return r.frames_compared; })
          ? "page frames compared"
          : "pagemap exclusive bit, no CAP_SYS_ADMIN");
  print_table(results, stdout);
  print_goal(results);
  const fs::path dir(c.out);
  write_csv(c, results, dir / "rss_savings.csv");
  write_plot(c, results, dir);
  std::printf("\nwrote %s and %s\n", (dir / "rss_savings.csv").c_str(),
              (dir / "rss_savings.svg").c_str());
  return failed ? 1 : 0;
}
