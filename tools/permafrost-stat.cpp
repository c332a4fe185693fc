// permafrost-stat — what a set of processes really uses and shares.
//
//   permafrost-stat [--tree] [--json] PID...
//
// For each process (with --tree: each PID and all its descendants) and for all of them together:
// RSS, PSS, USS (Private_Clean + Private_Dirty), shared bytes (Shared_Clean + Shared_Dirty),
// and the memory saved by sharing = sum of RSS - sum of PSS (what naive per-process accounting
// over-counts). All numbers come from /proc/PID/smaps_rollup through permafrost's memstat.
//
// Arenas: every process with an arena keeps an arena directory (a memfd named
// "permafrost-arenas", read through /proc/PID/fd: permafrost::listed_arenas) listing each arena's
// address range and name; the accessible mappings inside those ranges are the arenas, shown by
// their name in /proc/PID/maps when they have one and as "[arena:NAME]" otherwise. What maps
// shows depends on the kernel: an anonymous arena is "[anon:NAME]" only on kernels built with
// CONFIG_ANON_VMA_NAME (elsewhere it is unnamed, and found through the directory alone); a
// memfd-backed arena is always "/memfd:permafrost:NAME (deleted)". For processes without a
// directory (an older permafrost), mappings whose maps name contains "permafrost" ("[anon:...]"
// or "/memfd:...") are still listed.
//
// Images (permafrost::image, include/permafrost/image.hpp): the file mappings whose path ends in
// ".pfi" (the image suffix; " (deleted)" after a newer image was saved over it is allowed, and
// shown: that mapping is the old image, listed apart from the new one at the same path) and
// memfds whose name starts with "permafrost-image". Each is listed per process with its size and
// PSS, then once per image with the number of processes that map it and their summed PSS (with
// --tree: across the whole tree). Images saved under other names are not recognised.
//
// Names in the table: a control byte or a backslash is written as \ooo (newline \012, backslash
// \134); --json escapes as JSON does. Names are bytes, not necessarily UTF-8: in --json each byte
// that is not part of a well-formed UTF-8 sequence is written as U+FFFD (the replacement
// character), and the object then also carries the exact bytes, hex-encoded, in a field of the
// same name with "_hex" appended ("name_hex", "image_hex"); a name that is UTF-8 has no such field.
//
// Exit status: 0 success; 1 a process could not be read (no permission, a zombie or a kernel
// thread, or it vanished while being read: the message names the file and errno); 2 bad usage, or
// a PID that is not a number or not a live process.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <permafrost/memstat.hpp>

namespace {

struct process_row {
  pid_t pid = 0;
  std::string name;
  permafrost::memory_usage mem;
  std::vector<permafrost::mapping_usage> arenas;
  std::vector<permafrost::mapping_usage> images;
};

[[noreturn]] void usage(const std::string& msg) {
  std::fprintf(stderr,
               "permafrost-stat: %s\n"
               "usage: permafrost-stat [--tree] [--json] PID...\n"
               "  --tree   include every descendant of each PID\n"
               "  --json   print JSON instead of a table\n"
               "exit: 0 ok, 1 a process could not be read (a zombie, a kernel thread, no\n"
               "permission), 2 bad usage or no such process\n",
               msg.c_str());
  std::exit(2);
}

double mib(std::uint64_t b) { return static_cast<double>(b) / (1024.0 * 1024.0); }

// The length of the well-formed UTF-8 sequence at s[i], or 0 when the bytes there are not one
// (stray continuation byte, truncated or overlong sequence, surrogate, above U+10FFFF).
std::size_t utf8_sequence(const std::string& s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  std::size_t n = 0;
  unsigned lo = 0x80, hi = 0xbf;  // allowed range of the second byte
  if (c >= 0xc2 && c <= 0xdf) n = 2;
  else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
  } else return 0;
  if (i + n > s.size() || b(1) < lo || b(1) > hi) return 0;
  for (std::size_t k = 2; k < n; ++k)
    if (b(k) < 0x80 || b(k) > 0xbf) return 0;
  return n;
}

// Whether s is well-formed UTF-8.
bool is_utf8(const std::string& s) {
  for (std::size_t i = 0; i < s.size();) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
    } else if (const std::size_t n = utf8_sequence(s, i); n != 0) {
      i += n;
    } else {
      return false;
    }
  }
  return true;
}

// A JSON string literal for s. Process names are bytes, not necessarily UTF-8: each byte that is
// not part of a well-formed UTF-8 sequence is written as \ufffd (U+FFFD, the replacement
// character), so the output is always valid JSON and never claims a character the name does not
// hold (\u00XX, as before, read a byte as its Latin-1 character). json_field adds the bytes.
std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
      ++i;
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
      ++i;
    } else if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
    } else if (const std::size_t n = utf8_sequence(s, i); n != 0) {
      out.append(s, i, n);
      i += n;
    } else {
      out += "\\ufffd";
      ++i;
    }
  }
  return out + "\"";
}

// `"key": "<s>"` for a JSON object; when s is not UTF-8 (json_string replaced bytes), followed by
// `, "key_hex": "<s's bytes, two lowercase hex digits each>"`, so no byte is lost.
std::string json_field(const char* key, const std::string& s) {
  std::string out = std::string("\"") + key + "\": " + json_string(s);
  if (is_utf8(s)) return out;
  out += std::string(", \"") + key + "_hex\": \"";
  for (const char ch : s) {
    char buf[3];
    std::snprintf(buf, sizeof buf, "%02x", static_cast<unsigned char>(ch));
    out += buf;
  }
  return out + "\"";
}

// s for the table: a control byte (newline, tab, escape, ...) is written as \ooo, as the kernel
// writes one in /proc/PID/maps, and so is a backslash (\134, as the kernel writes one in
// /proc/PID/mounts), so that every \ooo printed stands for exactly one byte: a name holding the
// four characters "\012" prints as "\134012", never like a newline. Process and arena names are
// chosen by the processes read, so a newline in one could otherwise print lines that look like the
// tool's own (rows, totals), and an escape sequence could drive the terminal.
std::string table_text(const std::string& s) {
  std::string out;
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f || c == '\\') {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\%03o", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out;
}

std::string json_usage(const permafrost::memory_usage& u) {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "\"rss\": %llu, \"pss\": %llu, \"uss\": %llu, \"shared\": %llu, \"swap\": %llu",
                static_cast<unsigned long long>(u.rss), static_cast<unsigned long long>(u.pss),
                static_cast<unsigned long long>(u.uss), static_cast<unsigned long long>(u.shared()),
                static_cast<unsigned long long>(u.swap));
  return buf;
}

// The image a mapping shows, by the naming convention in the header comment; empty if none. A
// file's " (deleted)" stays: after a newer image was saved at the path, the old mapping is
// another image than the new one (the two were counted as one, under the new one's path). A
// memfd's is dropped: every memfd shows it.
std::string image_of(const permafrost::mapping_usage& m) {
  std::string name = m.name;
  const std::string deleted = " (deleted)";
  if (name.size() > deleted.size() &&
      name.compare(name.size() - deleted.size(), deleted.size(), deleted) == 0)
    name.resize(name.size() - deleted.size());
  const bool pfi =
      name.size() > 4 && name.compare(name.size() - 4, 4, ".pfi") == 0 && name[0] == '/';
  const bool memfd = name.rfind("/memfd:permafrost-image", 0) == 0;
  if (memfd) return name;
  return pfi ? m.name : std::string();
}

bool named_arena(const permafrost::mapping_usage& m) {
  const bool anon_or_memfd = m.name.rfind("[anon:", 0) == 0 || m.name.rfind("/memfd:", 0) == 0;
  return anon_or_memfd && m.name.find("permafrost") != std::string::npos;
}

// True when `m` is arena memory: named so, or an accessible mapping inside a listed arena's
// range. An unnamed one is given the name "[arena:NAME]".
bool is_arena(permafrost::mapping_usage& m, const std::vector<permafrost::listed_arena>& listed) {
  if (!image_of(m).empty()) return false;
  if (named_arena(m)) return true;
  if (m.perms.rfind("---", 0) == 0) return false;  // the reserved, inaccessible rest
  for (const auto& a : listed) {
    if (m.begin < a.end && m.end > a.begin) {
      if (m.name.empty()) m.name = "[arena:" + a.name + "]";
      return true;
    }
  }
  return false;
}

// Per process, then per image: how many of the listed processes map it and their summed PSS.
void print_images(const std::vector<process_row>& rows) {
  struct image_total {
    std::string name;
    std::uint64_t bytes = 0;
    std::uint64_t pss = 0;
    std::uint64_t rss = 0;
    std::vector<pid_t> pids;
  };
  std::vector<image_total> totals;
  bool any = false;
  for (const auto& r : rows) {
    for (const auto& m : r.images) {
      if (!any)
        std::printf("\nimages:\n%8s  %-44s %10s %10s %10s\n", "PID", "IMAGE", "SIZE MiB", "RSS MiB",
                    "PSS MiB");
      any = true;
      const std::string name = image_of(m);
      std::printf("%8d  %-44s %10.1f %10.1f %10.1f\n", r.pid, table_text(name).c_str(),
                  mib(m.end - m.begin), mib(m.usage.rss), mib(m.usage.pss));
      auto it = std::find_if(totals.begin(), totals.end(),
                             [&](const image_total& t) { return t.name == name; });
      if (it == totals.end())
        it = totals.insert(totals.end(), image_total{name, m.end - m.begin, 0, 0, {}});
      it->pss += m.usage.pss;
      it->rss += m.usage.rss;
      if (std::find(it->pids.begin(), it->pids.end(), r.pid) == it->pids.end())
        it->pids.push_back(r.pid);
    }
  }
  if (!any) return;
  std::printf("\nper image:\n%-44s %10s %10s %10s %10s\n", "IMAGE", "PROCESSES", "SIZE MiB",
              "SUM RSS", "SUM PSS");
  for (const auto& t : totals)
    std::printf("%-44s %10zu %10.1f %10.1f %10.1f\n", table_text(t.name).c_str(), t.pids.size(),
                mib(t.bytes), mib(t.rss), mib(t.pss));
}

}  // namespace

int main(int argc, char** argv) {
  bool tree = false;
  bool json = false;
  std::vector<pid_t> roots;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--tree") tree = true;
    else if (a == "--json") json = true;
    else if (a == "-h" || a == "--help") usage("help");
    else {
      // Digits only: strtol alone would also take " 1", "+1" and "-0".
      const bool digits =
          !a.empty() && a.size() <= 10 &&
          std::all_of(a.begin(), a.end(), [](char c) { return c >= '0' && c <= '9'; });
      const long long pid = digits ? std::stoll(a) : 0;
      if (pid <= 0 || pid > 0x7fffffff) usage("not a process id: '" + a + "'");
      roots.push_back(static_cast<pid_t>(pid));
    }
  }
  if (roots.empty()) usage("no PID given");

  // Explicit PIDs must exist; descendants that exit during the scan are simply left out.
  std::vector<std::pair<pid_t, bool>> pids;  // (pid, given explicitly)
  for (pid_t root : roots) {
    std::vector<pid_t> members{root};
    if (tree) {
      try {
        members = permafrost::process_tree(root);
      } catch (const permafrost::proc_error& e) {
        std::fprintf(stderr, "permafrost-stat: no such process %d (%s)\n", root, e.what());
        return 2;
      }
    }
    for (pid_t p : members)
      if (std::none_of(pids.begin(), pids.end(), [&](const auto& x) { return x.first == p; }))
        pids.emplace_back(p, p == root);
  }

  std::vector<process_row> rows;
  for (const auto& [pid, explicit_pid] : pids) {
    process_row r;
    r.pid = pid;
    try {
      r.mem = permafrost::process_memory(pid);
      r.name = permafrost::process_name(pid);
      const std::vector<permafrost::listed_arena> listed = permafrost::listed_arenas(pid);
      for (auto& m : permafrost::mappings(pid))
        if (!image_of(m).empty()) r.images.push_back(m);
        else if (is_arena(m, listed)) r.arenas.push_back(std::move(m));
    } catch (const permafrost::proc_error& e) {
      const int err = e.code().value();
      bool gone = err == ENOENT || err == ESRCH;
      if (gone && !explicit_pid) continue;  // a descendant exited meanwhile
      // A zombie has exited but still has a /proc entry (its parent has not reaped it): it
      // exists, and owns no memory to report.
      if (gone && permafrost::process_state(pid) == 'Z') {
        std::fprintf(stderr,
                     "permafrost-stat: process %d is a zombie (exited, not yet reaped by its "
                     "parent): it has no memory to report\n",
                     static_cast<int>(pid));
        return 1;
      }
      // A kernel thread (kthreadd and its children) is a live process whose memory files read
      // ESRCH: it has no user address space. Its stat still reads; a vanished process's does not.
      if (gone && permafrost::process_state(pid) != '\0') {
        std::fprintf(stderr,
                     "permafrost-stat: process %d is a kernel thread: it has no user memory to "
                     "report\n",
                     static_cast<int>(pid));
        return 1;
      }
      std::fprintf(stderr, "permafrost-stat: %s%s\n", gone ? "no such process: " : "", e.what());
      return gone ? 2 : 1;
    }
    rows.push_back(std::move(r));
  }

  permafrost::memory_usage total;
  for (const auto& r : rows) total += r.mem;
  const std::uint64_t saved = total.rss > total.pss ? total.rss - total.pss : 0;

  if (json) {
    std::printf("{\n  \"processes\": [\n");
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const auto& r = rows[i];
      std::printf("    {\"pid\": %d, %s, %s, \"arenas\": [", r.pid,
                  json_field("name", r.name).c_str(), json_usage(r.mem).c_str());
      for (std::size_t j = 0; j < r.arenas.size(); ++j) {
        const auto& m = r.arenas[j];
        std::printf("%s{%s, \"begin\": \"0x%lx\", \"end\": \"0x%lx\", %s}", j ? ", " : "",
                    json_field("name", m.name).c_str(), static_cast<unsigned long>(m.begin),
                    static_cast<unsigned long>(m.end), json_usage(m.usage).c_str());
      }
      std::printf("], \"images\": [");
      for (std::size_t j = 0; j < r.images.size(); ++j) {
        const auto& m = r.images[j];
        std::printf("%s{%s, \"bytes\": %llu, %s}", j ? ", " : "",
                    json_field("image", image_of(m)).c_str(),
                    static_cast<unsigned long long>(m.end - m.begin), json_usage(m.usage).c_str());
      }
      std::printf("]}%s\n", i + 1 < rows.size() ? "," : "");
    }
    std::printf("  ],\n  \"total\": {\"processes\": %zu, %s, \"saved_by_sharing\": %llu}\n}\n",
                rows.size(), json_usage(total).c_str(), static_cast<unsigned long long>(saved));
    return 0;
  }

  std::printf("%8s  %-16s %10s %10s %10s %10s\n", "PID", "NAME", "RSS MiB", "PSS MiB", "USS MiB",
              "SHARED MiB");
  for (const auto& r : rows)
    std::printf("%8d  %-16s %10.1f %10.1f %10.1f %10.1f\n", r.pid, table_text(r.name).c_str(),
                mib(r.mem.rss), mib(r.mem.pss), mib(r.mem.uss), mib(r.mem.shared()));
  std::printf("%8s  %-16s %10.1f %10.1f %10.1f %10.1f\n", "total",
              (std::to_string(rows.size()) + " processes").c_str(), mib(total.rss), mib(total.pss),
              mib(total.uss), mib(total.shared()));
  std::printf("saved by sharing (sum RSS - sum PSS): %.1f MiB\n", mib(saved));
  bool any = false;
  for (const auto& r : rows) {
    for (const auto& m : r.arenas) {
      if (!any)
        std::printf("\narenas:\n%8s  %-36s %10s %10s %10s\n", "PID", "MAPPING", "RSS MiB",
                    "PSS MiB", "USS MiB");
      any = true;
      std::printf("%8d  %-36s %10.1f %10.1f %10.1f\n", r.pid, table_text(m.name).c_str(),
                  mib(m.usage.rss), mib(m.usage.pss), mib(m.usage.uss));
    }
  }
  if (!any) std::printf("arenas: none\n");
  print_images(rows);
  return 0;
}
