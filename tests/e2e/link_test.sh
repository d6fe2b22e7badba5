#!/usr/bin/env bash
# The analyzer knows databases and saved files, nothing else: the sockhist binary must not link
# libmnl nor define any netlink or live-capture symbol. Usage: link_test.sh BINARY
set -euo pipefail
bin=$1
fail=0
if readelf -d "$bin" | grep -q 'NEEDED.*libmnl'; then
  echo "link_test: $bin links libmnl" >&2
  fail=1
fi
# Symbols of the live capture's namespaces, or libmnl's own, defined in the binary.
found=$(nm -C --defined-only "$bin" | grep -E ' sockhist::(netlink|capture)::| mnl_' || true)
if [ -n "$found" ]; then
  echo "link_test: $bin defines live-capture symbols:" >&2
  echo "$found" | head -20 >&2
  fail=1
fi
exit $fail
