// sockhist snapshots: the snapshot list of a host, with its states at a glance.
#include <fmt/format.h>

#include "common.hpp"
#include "sockhist/error.hpp"

namespace sockhist::analyzer {

namespace {

struct SnapshotsOptions {
  Common common;
  std::optional<std::string> since;
  std::optional<std::string> until;
};

Result run_snapshots(const SnapshotsOptions& o) {
  auto db = open_db(o.common);
  const auto scope = query::resolve_scope(db, o.common.host, o.common.netns);
  const auto since = o.since ? parse_moment(*o.since, "--since", o.common.now_ms) : INT64_MIN;
  const auto until = o.until ? parse_moment(*o.until, "--until", o.common.now_ms) : INT64_MAX;
  if (since > until) {
    throw Error(Exit::usage, "--since is after --until");
  }
  const auto snapshots = query::list_snapshots(db, scope, since, until);
  using render::Kind;
  render::Table t;
  t.columns = {{"snapshot_id", "ID", Kind::integer},
               {"time", "", Kind::time_ms},
               {"boot", "", Kind::text},
               {"sockets", "", Kind::integer, "sockets"},
               {"established", "ESTAB", Kind::integer, "sockets"},
               {"listen", "LISTEN", Kind::integer, "sockets"},
               {"time_wait", "TIME_WAIT", Kind::integer, "sockets"},
               {"close_wait", "CLOSE_WAIT", Kind::integer, "sockets"},
               {"syn_recv", "SYN_RECV", Kind::integer, "sockets"},
               {"tcp_other", "TCP OTHER", Kind::integer, "sockets"},
               {"udp", "UDP", Kind::integer, "sockets"},
               {"unix", "UNIX", Kind::integer, "sockets"},
               {"source", "", Kind::text, "", 2, false, true},
               {"owners", "", Kind::text, "", 2, false, true},
               {"boot_id", "", Kind::text, "", 2, false, true}};
  std::string previous_boot;
  for (const auto& s : snapshots) {
    using model::Proto;
    using model::SockState;
    const auto tcp = s.proto_total(Proto::tcp);
    const auto est = s.count(Proto::tcp, SockState::established);
    const auto listen = s.count(Proto::tcp, SockState::listen);
    const auto tw = s.count(Proto::tcp, SockState::time_wait);
    const auto cw = s.count(Proto::tcp, SockState::close_wait);
    const auto sr = s.count(Proto::tcp, SockState::syn_recv);
    std::string boot = s.boot_id.substr(0, 8);
    if (!previous_boot.empty() && s.boot_id != previous_boot) {
      boot += " (reboot)";
    }
    previous_boot = s.boot_id;
    t.rows.push_back({s.id, s.time_ms, boot, s.socket_count, est, listen, tw, cw, sr, tcp - est - listen - tw - cw - sr,
                      s.proto_total(Proto::udp), s.proto_total(Proto::unix_domain), s.source, s.owners, s.boot_id});
  }
  const auto options = render_options(o.common);
  if (options.format == render::Format::json) {
    return {render::render(t, options, json_head("snapshots", o.common, &scope)), 0};
  }
  return {render::render(t, options, {}, {fmt::format("{}: {} snapshots", scope_line(scope), snapshots.size())}), 0};
}

}  // namespace

void setup_snapshots(CLI::App& app, Runner& selected) {
  auto o = std::make_shared<SnapshotsOptions>();
  auto* sub = add_command(app, "snapshots", "The snapshot list: time, boot, sockets, states at a glance", selected,
                          [o] { return run_snapshots(*o); });
  add_common(*sub, o->common);
  sub->add_option("--since", o->since, "From this moment (ISO-8601, 'YYYY-MM-DD HH:MM', HH:MM, or 2h ago)");
  sub->add_option("--until", o->until, "Up to this moment");
}

}  // namespace sockhist::analyzer
