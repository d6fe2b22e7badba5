// sockhist explain: the TCP states in words, and for one state what it means, who is in it now
// (from the newest snapshot, when a database is at hand), how it ends and what a pile-up means.
#include <algorithm>
#include <array>
#include <filesystem>
#include <map>

#include <fmt/format.h>

#include "common.hpp"
#include "sockhist/error.hpp"
#include "sockhist/store.hpp"

namespace sockhist::analyzer {

namespace {

struct StateText {
  const char* name;
  const char* line;     // the one-line summary of the diagram
  const char* means;    // what it means for an operator
  const char* ends;     // how it ends
  const char* pile_up;  // what many of them mean
};

constexpr std::array k_states = {
    StateText{"LISTEN", "a server socket waiting for connections (listen())",
              "A server socket accepting connections. Recv-Q is the accept queue: connections the kernel completed "
              "that the application has not accept()ed yet.",
              "When the application closes it.",
              "Many listeners are normal. A Recv-Q near the backlog limit, or TcpExt.ListenOverflows growing, means "
              "the application accepts too slowly: connections are being dropped."},
    StateText{"SYN_SENT", "we called connect() and wait for the peer's SYN+ACK",
              "This host called connect() and sent a SYN; no answer yet.",
              "ESTABLISHED on the peer's SYN+ACK; closed on an RST or after the SYN retries (net.ipv4.tcp_syn_retries, "
              "about two minutes by default).",
              "The peer is down, filtered, or too slow: look at the remote addresses these sockets point to."},
    StateText{"SYN_RECV", "the peer's SYN arrived, our SYN+ACK is out, we wait for its ACK",
              "A request socket: a client's SYN arrived and this host answered with SYN+ACK. These have no inode and "
              "no owner until accept().",
              "ESTABLISHED on the client's ACK; dropped after the SYN+ACK retries (net.ipv4.tcp_synack_retries).",
              "A SYN flood, clients that vanish mid-handshake, or a full accept queue (see ListenOverflows, "
              "TCPReqQFullDrop, SyncookiesSent)."},
    StateText{"ESTABLISHED", "an open connection", "An open connection, data can flow both ways.",
              "Either side closes: ours first leads to FIN_WAIT1, the peer's first to CLOSE_WAIT.",
              "Many are normal for a busy service; compare with the usual level (sockhist trend)."},
    StateText{"FIN_WAIT1", "we closed first; our FIN is not acknowledged yet",
              "This host closed first and sent a FIN that the peer has not acknowledged.",
              "FIN_WAIT2 when the FIN is acknowledged, CLOSING when the peer's FIN crosses ours.",
              "The peer does not acknowledge (gone, or a zero window): check Send-Q and the peers."},
    StateText{"FIN_WAIT2", "we closed first; our FIN is acknowledged, we wait for the peer's FIN",
              "This host closed first; the peer acknowledged but has not closed its side. An orphaned one (no "
              "owner, TIME_WAIT timer kind) is a minisocket bounded by net.ipv4.tcp_fin_timeout.",
              "TIME_WAIT on the peer's FIN; an orphan is dropped after tcp_fin_timeout (60 s by default).",
              "Peers that never close their side (half-closed connections): look at the remote addresses."},
    StateText{"TIME_WAIT", "we closed first and the exchange finished: held 60 s, then gone",
              "This host closed first and the close completed. The kernel keeps the 4-tuple 60 s (2*MSL, "
              "TCP_TIMEWAIT_LEN; no sysctl changes it) so late segments cannot reach a new connection. No owner: "
              "sockhist carries the owner from the connection's earlier life where it saw it.",
              "Always after 60 s; earlier when a new outgoing connection reuses the slot (tcp_tw_reuse, "
              "TcpExt.TWRecycled). Over tcp_max_tw_buckets sockets close without TIME_WAIT (TCPTimeWaitOverflow).",
              "The population is about the close rate times 60 s. On a listening port the server closes first; on "
              "ephemeral ports this host is a client closing first and may run out of ports to one destination."},
    StateText{"CLOSE", "unused (UDP: an unconnected socket)",
              "For TCP a socket that is closed; for UDP an unconnected socket (netstat prints no state, ss UNCONN).",
              "—", "For UDP normal; for TCP rare and short-lived."},
    StateText{"CLOSE_WAIT", "the peer closed; our application has not called close()",
              "The peer closed its side (its FIN arrived) and the application on this host has not called close(). "
              "No kernel timer ends this state.",
              "Only when the owning process closes the socket (or exits).",
              "A leak in the owning application: it stops reading a connection the peer closed and never closes it. "
              "The count grows until restart; Recv-Q shows data it never read. See sockhist trend --state CLOSE_WAIT "
              "--by process."},
    StateText{"LAST_ACK", "the peer closed, then we closed; we wait for the last ACK",
              "Both sides closed, the peer first; this host's FIN waits for its acknowledgement.",
              "Closed on the ACK, or after retransmits time out.",
              "Peers that vanish before acknowledging the last FIN."},
    StateText{"CLOSING", "both sides closed at once; rare", "Both sides sent FINs simultaneously.",
              "TIME_WAIT when our FIN is acknowledged.", "Rare; many point to lost ACKs."},
};

const StateText* find_state(std::string name) {
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::toupper(c); });
  std::replace(name.begin(), name.end(), '-', '_');
  if (name == "ESTAB") {
    name = "ESTABLISHED";
  } else if (name == "FIN_WAIT_1") {
    name = "FIN_WAIT1";
  } else if (name == "FIN_WAIT_2") {
    name = "FIN_WAIT2";
  } else if (name == "UNCONN") {
    name = "CLOSE";
  }
  for (const auto& s : k_states) {
    if (name == s.name) {
      return &s;
    }
  }
  return nullptr;
}

// "Who is in it": the newest snapshot's sockets in the state, by owner, when a database is at hand.
std::string who(const Common& common, const std::string& state) {
  const auto path = store::resolve_db_path(common.db);
  if (!common.db && !std::filesystem::exists(path)) {
    return fmt::format("Who is in it: no database at {} (--db names one).\n", path.string());
  }
  auto db = open_db(common);
  const auto scope = resolve_scope(db, common.host, common.netns);
  const auto snap = query::latest_snapshot(db, scope);
  const auto rows = query::snapshot_sockets(db, snap->id);
  std::map<std::string, std::pair<std::int64_t, std::int64_t>> owners;  // owner -> count, oldest first_time
  std::int64_t total = 0;
  for (const auto& r : rows) {
    if (r.proto != model::Proto::tcp || model::name(r.state) != state) {
      continue;
    }
    ++total;
    const std::string owner =
        r.pid ? fmt::format("{}/{}{}", *r.pid, r.comm.value_or("?"), r.owner_carried ? " (carried)" : "") : "-";
    auto& [n, oldest] = owners[owner];
    oldest = n == 0 ? r.first_time_ms : std::min(oldest, r.first_time_ms);
    ++n;
  }
  const auto options = render_options(common);
  std::string out =
      render::printable(fmt::format("Who is in it: {} TCP sockets in the newest snapshot ({}, {}).", total,
                                    scope_line(scope), model::format_human(snap->time_ms, options.zone))) +
      "\n";
  std::vector<std::pair<std::string, std::pair<std::int64_t, std::int64_t>>> sorted(owners.begin(), owners.end());
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.second.first > b.second.first; });
  for (std::size_t i = 0; i < sorted.size() && i < 10; ++i) {
    out += render::printable(fmt::format("  {:>6}  {:<30}  oldest in this state for {}", sorted[i].second.first,
                                         sorted[i].first,
                                         model::format_duration(snap->time_ms - sorted[i].second.second))) +
           "\n";
  }
  return out;
}

std::string wrap(const std::string& text, std::size_t width, const std::string& indent) {
  std::string out;
  std::string line;
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto end = text.find(' ', pos);
    if (end == std::string::npos) {
      end = text.size();
    }
    const std::string word = text.substr(pos, end - pos);
    if (!line.empty() && indent.size() + line.size() + 1 + word.size() > width) {
      out += indent + line + "\n";
      line.clear();
    }
    line += (line.empty() ? "" : " ") + word;
    pos = end + 1;
  }
  if (!line.empty()) {
    out += indent + line + "\n";
  }
  return out;
}

struct ExplainOptions {
  Common common;
  std::optional<std::string> state;
};

Result run_explain(const ExplainOptions& o) {
  const auto options = render_options(o.common);
  if (!o.state) {
    render::Table t;
    t.columns = {{"state"}, {"meaning"}};
    for (const auto& s : k_states) {
      t.rows.push_back({std::string(s.name), std::string(s.line)});
    }
    if (options.format != render::Format::table) {
      return {render::render(t, options, json_head("explain", o.common, nullptr)), 0};
    }
    std::string out =
        "The TCP states, in the order a connection passes them (include/net/tcp_states.h):\n"
        "  server: LISTEN -> SYN_RECV -> ESTABLISHED;  client: SYN_SENT -> ESTABLISHED\n"
        "  closing first:  ESTABLISHED -> FIN_WAIT1 -> FIN_WAIT2 -> TIME_WAIT (60 s) -> gone\n"
        "  closed by peer: ESTABLISHED -> CLOSE_WAIT (until the application closes) -> LAST_ACK -> gone\n\n";
    out += render::to_text(t, options);
    out += "\n'sockhist explain STATE' says more about one state and who is in it now.\n";
    return {out, 0};
  }
  const auto* s = find_state(*o.state);
  if (!s) {
    std::string names;
    for (const auto& k : k_states) {
      names += (names.empty() ? "" : ", ") + std::string(k.name);
    }
    throw Error(Exit::usage, fmt::format("explain {}: not a TCP state (states: {})", *o.state, names));
  }
  const std::string who_text = who(o.common, s->name);
  if (options.format != render::Format::table) {
    render::Table t;
    t.columns = {{"state"}, {"meaning"}, {"means"}, {"ends"}, {"pile_up"}, {"who"}};
    t.rows.push_back({std::string(s->name), std::string(s->line), std::string(s->means), std::string(s->ends),
                      std::string(s->pile_up), who_text});
    return {render::render(t, options, json_head("explain", o.common, nullptr)), 0};
  }
  std::string out = fmt::format("{}: {}\n\n", s->name, s->line);
  out += "What it means:\n" + wrap(s->means, 100, "  ");
  out += "How it ends:\n" + wrap(s->ends, 100, "  ");
  out += "What a pile-up means:\n" + wrap(s->pile_up, 100, "  ");
  out += who_text;
  return {out, 0};
}

}  // namespace

void setup_explain(CLI::App& app, Runner& selected) {
  auto o = std::make_shared<ExplainOptions>();
  auto* sub = add_command(app, "explain", "What a TCP state means, who is in it, how it ends, what a pile-up means",
                          selected, [o] { return run_explain(*o); });
  add_common(*sub, o->common);
  sub->add_option("state", o->state, "A TCP state (netstat's or ss's name); none: every state, one line each");
}

}  // namespace sockhist::analyzer
