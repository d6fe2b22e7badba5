// sockhist show: what netstat printed at a past moment, with netstat's flags, columns and names.
#include <netdb.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "common.hpp"
#include "sockhist/error.hpp"

namespace sockhist::analyzer {

namespace {

struct ShowOptions {
  Common common;
  std::optional<std::string> at;
  std::optional<std::int64_t> snapshot;
  bool tcp = false, udp = false, unix_sockets = false;
  bool listening = false, all = false, numeric = false, programs = false, extend = false, timers = false;
  bool wide = false;
};

// netstat's PROGNAME_WIDTH: "PID/name" is cut to 19 characters and padded to 20.
constexpr std::size_t k_program_width = 20;
// netstat -W off: an address and port longer than this are cut to fit (net-tools addr_do_one).
constexpr std::size_t k_short_address = 22;

class ServiceNames {
 public:
  const std::string& port(std::int64_t port, const std::string& proto) {
    auto [it, fresh] = m_cache.try_emplace({port, proto});
    if (fresh) {
      servent entry{};
      servent* found = nullptr;
      char buffer[1024];
      if (port != 0 &&
          ::getservbyport_r(htons(static_cast<std::uint16_t>(port)), proto.c_str(), &entry, buffer, sizeof buffer,
                            &found) == 0 &&
          found != nullptr) {
        it->second = found->s_name;
      } else {
        it->second = port == 0 ? "*" : std::to_string(port);
      }
    }
    return it->second;
  }

 private:
  std::map<std::pair<std::int64_t, std::string>, std::string> m_cache;
};

std::string endpoint(const std::string& addr, std::int64_t port, const std::string& proto, const ShowOptions& o,
                     ServiceNames& names) {
  const std::string sport = o.numeric ? (port == 0 ? std::string("*") : std::to_string(port)) : names.port(port, proto);
  if (!o.wide && addr.size() + sport.size() > k_short_address) {
    const std::size_t port_len = std::min(sport.size(), k_short_address - 4);
    const std::size_t addr_len = k_short_address - port_len;
    return addr.substr(0, addr_len) + ":" + sport.substr(0, port_len);
  }
  return addr + ":" + sport;
}

// net-tools names a process by its argv[0] (the base name when it is a path), else the command name.
std::string program(const query::SocketRow& r) {
  if (!r.pid) {
    return "-";
  }
  std::string name = r.comm.value_or("");
  if (r.cmdline && !r.cmdline->empty()) {
    std::string argv0 = r.cmdline->substr(0, r.cmdline->find(' '));
    if (argv0.starts_with('/')) {
      argv0 = argv0.substr(argv0.rfind('/') + 1);
    }
    name = argv0;
  }
  std::string text = fmt::format("{}/{}", *r.pid, name);
  const std::size_t room = k_program_width - 1 - (r.owner_carried ? 1 : 0);
  if (text.size() > room) {
    text.resize(room);
  }
  return r.owner_carried ? text + "*" : text;
}

// Send-Q as ss prints it: a listener's backlog limit where the capture knew it (sock_diag, an ss
// listing), else the kernel's send queue (0 for a listener in /proc, as netstat prints it).
std::int64_t send_q(const query::SocketRow& r) {
  const bool listening = r.state == model::SockState::listen || r.state == model::SockState::unix_listening;
  return listening && r.backlog ? *r.backlog : r.tx_queue;
}

std::string timer_text(const query::SocketRow& r) {
  const double seconds = static_cast<double>(r.timer_ms) / 1000.0;
  const int timer = static_cast<int>(r.timer);
  if (r.proto == model::Proto::udp) {
    // netstat -o on UDP: the retransmit count is always shown as 0.
    if (timer == 0) {
      return fmt::format("off (0.00/0/{})", r.probes);
    }
    if (timer <= 2) {
      return fmt::format("on{} ({:2.2f}/0/{})", timer, seconds, r.probes);
    }
    return fmt::format("unkn-{} ({:2.2f}/0/{})", timer, seconds, r.probes);
  }
  switch (timer) {
    case 0:
      return fmt::format("off (0.00/{}/{})", r.retransmits, r.probes);
    case 1:
      return fmt::format("on ({:2.2f}/{}/{})", seconds, r.retransmits, r.probes);
    case 2:
      return fmt::format("keepalive ({:2.2f}/{}/{})", seconds, r.retransmits, r.probes);
    case 3:
      return fmt::format("timewait ({:2.2f}/{}/{})", seconds, r.retransmits, r.probes);
    default:
      return fmt::format("unkn-{} ({:2.2f}/{}/{})", timer, seconds, r.retransmits, r.probes);
  }
}

bool all_zero(const std::string& addr) {
  return addr.empty() || addr == "0.0.0.0" || addr == "::";
}

// Which rows netstat would print for these flags (net-tools: tcp_do_one, udp_do_one, unix_do_one).
bool selected(const query::SocketRow& r, const ShowOptions& o) {
  if (o.all) {
    return true;
  }
  if (r.proto == model::Proto::tcp) {
    return o.listening == (r.remote_port == 0);
  }
  if (r.proto == model::Proto::udp) {
    return o.listening == all_zero(r.remote_addr);
  }
  return o.listening == (r.state == model::SockState::unix_listening);
}

std::string section_title(const char* what, const ShowOptions& o) {
  return fmt::format("Active {} {}", what,
                     o.all         ? "(servers and established)"
                     : o.listening ? "(only servers)"
                                   : "(w/o servers)");
}

std::string inet_text(const std::vector<const query::SocketRow*>& rows, const ShowOptions& o, bool& carried) {
  ServiceNames names;
  std::string out = section_title("Internet connections", o) + "\n";
  out += "Proto Recv-Q Send-Q Local Address           Foreign Address         State      ";
  if (o.extend) {
    out += " User       Inode     ";
  }
  if (o.programs) {
    out += fmt::format(" {:<{}}", "PID/Program name", k_program_width);
  }
  if (o.timers) {
    out += " Timer";
  }
  out += "\n";
  for (const auto* r : rows) {
    const std::string proto_name(model::name(r->proto));
    const std::string proto = r->family == 6 ? proto_name + "6" : proto_name;
    const std::string local = endpoint(r->local_addr, r->local_port, proto_name, o, names);
    const std::string remote = endpoint(r->remote_addr, r->remote_port, proto_name, o, names);
    std::string state(model::name(r->state));
    if (r->proto == model::Proto::udp) {
      state = r->state == model::SockState::established ? "ESTABLISHED"
              : r->state == model::SockState::close     ? ""
                                                        : "UNKNOWN";
    }
    std::string line =
        fmt::format("{:<4}  {:>6} {:>6} {:<{}} {:<{}} {:<11}", proto, r->rx_queue, send_q(*r), local,
                    std::max<std::size_t>(23, local.size()), remote, std::max<std::size_t>(23, remote.size()), state);
    if (o.extend) {
      const std::string user = !o.numeric && r->user ? *r->user : std::to_string(r->uid);
      line += fmt::format(" {:<10} {:<10}", user, r->inode);
    }
    if (o.programs) {
      line += fmt::format(" {:<{}}", program(*r), k_program_width);
      carried = carried || (r->owner_carried && r->pid);
    }
    if (o.timers) {
      line += " " + timer_text(*r);
    }
    out += render::printable(line) + "\n";  // a recorded name must not drive the terminal
  }
  return out;
}

std::string unix_text(const std::vector<const query::SocketRow*>& rows, const ShowOptions& o) {
  std::string out = section_title("UNIX domain sockets", o) + "\n";
  out += "Proto RefCnt Flags       Type       State         I-Node  ";
  if (o.programs) {
    out += fmt::format(" {:<{}}", "PID/Program name", k_program_width);
  }
  out += " Path\n";
  for (const auto* r : rows) {
    std::string flags = "[ ";
    if (r->state == model::SockState::unix_listening || (r->unix_flags & 0x10000) != 0) {
      flags += "ACC ";
    }
    if ((r->unix_flags & 0x20000) != 0) {
      flags += "W ";
    }
    if ((r->unix_flags & 0x40000) != 0) {
      flags += "N ";
    }
    flags += "]";
    std::string type = r->sock_type.value_or("unknown");
    std::transform(type.begin(), type.end(), type.begin(), [](unsigned char c) { return std::toupper(c); });
    const std::string state(r->state == model::SockState::unix_unconnected ? "" : model::name(r->state));
    // The reference count is not recorded (sock_diag does not report it): "-" keeps the columns.
    std::string line = fmt::format("{:<5} {:<6} {:<11} {:<10} {:<13} {:<8}", "unix", "-", flags, type, state, r->inode);
    if (o.programs) {
      line += fmt::format(" {:<{}}", program(*r), k_program_width);
    }
    out += render::printable(line + " " + r->local_addr) + "\n";  // paths are anyone's to choose
  }
  return out;
}

}  // namespace

render::Table socket_table(const std::vector<const query::SocketRow*>& rows, std::int64_t snapshot_ms) {
  using render::Column;
  using render::Kind;
  render::Table t;
  t.columns = {{"proto"},
               {"family", "", Kind::integer},
               {"state"},
               {"local_addr"},
               {"local_port", "", Kind::integer},
               {"remote_addr"},
               {"remote_port", "", Kind::integer},
               {"recv_q", "", Kind::integer, "bytes"},
               {"send_q", "", Kind::integer, "bytes"},
               {"backlog", "", Kind::integer, "connections"},
               {"pid", "", Kind::integer},
               {"program"},
               {"owner_carried", "", Kind::integer},
               {"cmdline"},
               {"uid", "", Kind::integer},
               {"user"},
               {"inode", "", Kind::integer},
               {"timer"},
               {"timer_remaining", "", Kind::duration_ms},
               {"retransmits", "", Kind::integer},
               {"probes", "", Kind::integer},
               {"sock_type"},
               {"cookie", "", Kind::integer},
               {"in_state_since", "", Kind::time_ms},
               {"in_state_for", "", Kind::duration_ms}};
  static constexpr std::array<const char*, 6> k_timers = {"off", "on", "keepalive", "timewait", "probe", "delack"};
  const auto opt = [](const auto& v) -> render::Value {
    if (!v) {
      return {};
    }
    using T = std::decay_t<decltype(*v)>;
    if constexpr (std::is_same_v<T, std::string>) {
      return *v;
    } else {
      return static_cast<std::int64_t>(*v);
    }
  };
  for (const auto* r : rows) {
    const bool unix_socket = r->proto == model::Proto::unix_domain;
    t.rows.push_back(
        {std::string(model::name(r->proto)),
         unix_socket ? render::Value{} : render::Value{std::int64_t{r->family}},
         std::string(model::name(r->state)),
         r->local_addr,
         unix_socket ? render::Value{} : render::Value{r->local_port},
         unix_socket ? render::Value{} : render::Value{r->remote_addr},
         unix_socket ? render::Value{} : render::Value{r->remote_port},
         r->rx_queue,
         send_q(*r),
         opt(r->backlog),
         opt(r->pid),
         opt(r->comm),
         std::int64_t{r->owner_carried ? 1 : 0},
         opt(r->cmdline),
         r->uid,
         opt(r->user),
         static_cast<std::int64_t>(r->inode),
         std::string(static_cast<std::size_t>(r->timer) < k_timers.size() ? k_timers[static_cast<std::size_t>(r->timer)]
                                                                          : "?"),
         r->timer_ms,
         r->retransmits,
         r->probes,
         opt(r->sock_type),
         opt(r->cookie),
         r->first_time_ms,
         std::max<std::int64_t>(0, snapshot_ms - r->first_time_ms)});
  }
  return t;
}

namespace {

Result run_show(ShowOptions& o) {
  auto db = open_db(o.common);
  query::SnapshotSummary snap;
  query::Scope scope;
  if (o.snapshot) {
    if (o.at || o.common.host || o.common.netns) {
      throw Error(Exit::usage, "--snapshot names one snapshot: it cannot be combined with --at, --host or --netns");
    }
    scope = query::scope_of_snapshot(db, *o.snapshot);
    snap = query::snapshot_by_id(db, *o.snapshot);
  } else {
    scope = resolve_scope(db, o.common.host, o.common.netns);
    snap = snapshot_for(db, scope, o.at, o.common.now_ms);
  }
  if (!o.tcp && !o.udp && !o.unix_sockets) {
    o.tcp = o.udp = o.unix_sockets = true;
  }
  const auto rows = query::snapshot_sockets(db, snap.id);
  std::vector<const query::SocketRow*> inet;
  std::vector<const query::SocketRow*> unix_rows;
  for (const auto& r : rows) {
    if (!selected(r, o)) {
      continue;
    }
    if ((r.proto == model::Proto::tcp && o.tcp) || (r.proto == model::Proto::udp && o.udp)) {
      inet.push_back(&r);
    } else if (r.proto == model::Proto::unix_domain && o.unix_sockets) {
      unix_rows.push_back(&r);
    }
  }
  // netstat's order: tcp, tcp6, udp, udp6 (each in the kernel's order, which the spans keep).
  std::stable_sort(inet.begin(), inet.end(), [](const auto* a, const auto* b) {
    return std::pair(a->proto != model::Proto::tcp, a->family) < std::pair(b->proto != model::Proto::tcp, b->family);
  });
  const auto options = render_options(o.common);
  if (options.format != render::Format::table) {
    std::vector<const query::SocketRow*> all = inet;
    all.insert(all.end(), unix_rows.begin(), unix_rows.end());
    auto table = socket_table(all, snap.time_ms);
    auto doc = json_head("show", o.common, &scope);
    doc["snapshot"] = {{"id", snap.id},
                       {"time", model::format_iso_utc(snap.time_ms)},
                       {"time_epoch", static_cast<double>(snap.time_ms) / 1000.0},
                       {"boot_id", snap.boot_id},
                       {"source", snap.source},
                       {"owners", snap.owners}};
    return {render::render(table, options, doc), 0};
  }
  std::string out;
  if (::isatty(STDERR_FILENO) == 1) {
    fmt::print(stderr, "sockhist: snapshot {} of {} at {}\n", snap.id, scope_line(scope),
               model::format_human(snap.time_ms, options.zone));
  }
  bool carried = false;
  if (o.tcp || o.udp) {
    out += inet_text(inet, o, carried);
  }
  if (o.unix_sockets) {
    out += unix_text(unix_rows, o);
  }
  if (carried && ::isatty(STDOUT_FILENO) == 1) {
    out += "* owner carried forward from the connection's earlier life (the kernel names no owner for TIME_WAIT)\n";
  }
  return {out, 0};
}

}  // namespace

void setup_show(CLI::App& app, Runner& selected_runner) {
  auto o = std::make_shared<ShowOptions>();
  auto* sub = add_command(app, "show", "What netstat showed at a past moment (netstat's flags, columns and names)",
                          selected_runner, [o] { return run_show(*o); });
  add_common(*sub, o->common);
  sub->add_option("--at", o->at, "The moment: the newest snapshot at or before it (default: the newest)");
  sub->add_option("--snapshot", o->snapshot, "A snapshot by id (see 'sockhist snapshots')");
  sub->add_flag("-t,--tcp", o->tcp, "TCP sockets");
  sub->add_flag("-u,--udp", o->udp, "UDP sockets");
  sub->add_flag("-x,--unix", o->unix_sockets, "UNIX sockets");
  sub->add_flag("-l,--listening", o->listening, "Only listening sockets");
  sub->add_flag("-a,--all", o->all, "Listening and non-listening sockets");
  sub->add_flag("-n,--numeric", o->numeric, "Numeric ports and users (addresses are always numeric)");
  sub->add_flag("-p,--programs", o->programs, "PID/Program name (owners carried to TIME_WAIT marked *)");
  sub->add_flag("-e,--extend", o->extend, "User and Inode columns");
  sub->add_flag("-o,--timers", o->timers, "Timer column in netstat's format");
  sub->add_flag("-W,--wide", o->wide, "Do not cut long addresses");
}

}  // namespace sockhist::analyzer
