// sockhist hosts: the hosts in a database, the span of their history and the reboots seen.
#include <fmt/format.h>

#include "common.hpp"

namespace sockhist::analyzer {

namespace {

Result run_hosts(const Common& common) {
  auto db = open_db(common);
  const auto hosts = query::list_hosts(db);
  const auto options = render_options(common);
  using render::Kind;
  render::Table t;
  t.columns = {{"host"},
               {"first", "FIRST SNAPSHOT", Kind::time_ms},
               {"last", "LAST SNAPSHOT", Kind::time_ms},
               {"snapshots", "", Kind::integer},
               {"namespaces", "NETNS", Kind::integer},
               {"boots", "", Kind::integer},
               {"sockets", "SOCKETS NOW", Kind::integer, "sockets"},
               {"kernel"},
               {"machine_id", "", Kind::text, "", 2, false, true},
               {"reboots", "", Kind::text, "", 2, false, true}};
  for (const auto& h : hosts) {
    std::string reboots;
    for (const auto ms : h.reboots_ms) {
      reboots += (reboots.empty() ? "" : " ") + model::format_iso_utc(ms);
    }
    t.rows.push_back({h.name, h.first_ms, h.last_ms, h.snapshots, h.namespaces, h.boots, h.last_socket_count,
                      h.kernel ? render::Value{*h.kernel} : render::Value{},
                      h.machine_id ? render::Value{*h.machine_id} : render::Value{}, reboots});
    for (const auto ms : h.reboots_ms) {
      t.notes.push_back(fmt::format("{}: rebooted before {}", h.name, model::format_human(ms, options.zone)));
    }
    if (h.namespace_labels.size() > 1 || !h.own_namespace) {
      std::string list;
      for (const auto& label : h.namespace_labels) {
        list += (list.empty() ? "" : ", ") + label;
      }
      t.notes.push_back(fmt::format("{}: network namespaces {} (--netns chooses one; the figures above are {}'s)",
                                    h.name, list,
                                    h.own_namespace ? std::string("its own") : h.namespace_labels.front()));
    }
  }
  if (options.format == render::Format::json) {
    auto doc = json_head("hosts", common, nullptr);
    auto rows = render::to_json_rows(t);
    for (std::size_t i = 0; i < hosts.size(); ++i) {
      auto list = nlohmann::ordered_json::array();
      for (const auto ms : hosts[i].reboots_ms) {
        list.push_back(model::format_iso_utc(ms));
      }
      rows[i]["reboots"] = list;
      rows[i]["namespace_list"] = hosts[i].namespace_labels;
    }
    doc["rows"] = rows;
    return {render::render(t, options, doc), 0};
  }
  return {render::render(t, options), 0};
}

}  // namespace

void setup_hosts(CLI::App& app, Runner& selected) {
  auto common = std::make_shared<Common>();
  auto* sub = add_command(app, "hosts", "Hosts in the database: first and last snapshot, reboots seen", selected,
                          [common] { return run_hosts(*common); });
  add_common(*sub, *common);
}

}  // namespace sockhist::analyzer
