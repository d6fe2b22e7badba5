// ProcRoot: every file below a /proc root read to end of file, never trusting the size /proc reports,
// through input::Tree, which keeps each path inside the root (or the tree that bounds it).
#include <fmt/format.h>

#include "sockhist/error.hpp"
#include "sockhist/proc.hpp"

namespace sockhist::proc {

ProcRoot::ProcRoot(std::filesystem::path root) : m_root(std::move(root)), m_tree(m_root) {}

ProcRoot::ProcRoot(std::filesystem::path root, const std::filesystem::path& boundary)
    : m_root(std::move(root)), m_tree(boundary) {
  const auto below = m_root.lexically_relative(boundary).generic_string();
  if (below.empty() || below.starts_with("..")) {
    throw Error(Exit::bad_input, fmt::format("{}: not below {}", m_root.string(), boundary.string()));
  }
  m_prefix = below == "." ? std::string() : below;
}

std::string ProcRoot::inside(std::string_view relative) const {
  return m_prefix.empty() ? std::string(relative) : fmt::format("{}/{}", m_prefix, relative);
}

std::optional<std::string> ProcRoot::read(std::string_view relative) const {
  return m_tree.read(inside(relative));
}

std::optional<std::string> ProcRoot::try_read(std::string_view relative) const {
  try {
    return read(relative);
  } catch (const input::Refused&) {
    throw;
  } catch (const Error&) {
    return std::nullopt;
  }
}

std::optional<std::string> ProcRoot::read_link(std::string_view relative) const {
  return m_tree.read_link(inside(relative));
}

bool ProcRoot::read_each(std::string_view relative, const std::function<void(std::string_view)>& chunk) const {
  return m_tree.read_each(inside(relative), chunk);
}

input::Fd ProcRoot::open_directory(std::string_view relative) const {
  return m_tree.open_directory(inside(relative));
}

}  // namespace sockhist::proc
