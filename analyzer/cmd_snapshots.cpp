// sockhist snapshots: the snapshot list of a host, with its states at a glance.
#include <fmt/format.h>

#include "common.hpp"
#include "sockhist/error.hpp"

namespace sockhist::analyzer {

namespace {

struct SnapshotsOptions {
  Common common;
  Window window;
};

const WindowDefaults k_window{std::nullopt, false, {}};

Result run_snapshots(const SnapshotsOptions& o) {
  auto db = open_db(o.common);
  const auto scope = resolve_scope(db, o.common.host, o.common.netns);
  const auto [since, until] = resolve_window(o.window, k_window, o.common.now_ms);
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
  add_window(*sub, o->window, k_window, "From this moment");
}

}  // namespace sockhist::analyzer
