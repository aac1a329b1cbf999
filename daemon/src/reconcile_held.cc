// Plans held by the suspension threshold: stored whole in Redis by a run, enqueued as planned by
// `scimsyncd guard release`.
#include <algorithm>
#include <cstdlib>

#include "reconcile_internal.h"
#include "scimsync/daemon/reconcile.h"
#include "scimsync/log.h"

namespace scimsync::daemon {
namespace {

const redis::Script& StoreHeldScript() {
  static const redis::Script s(
      "redis.call('DEL', KEYS[1]) for i = 1, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end "
      "return #ARGV");
  return s;
}

// A held plan's items, one Redis list element each: the fields joined by \x1f (compact JSON
// payloads never hold a raw control character).
constexpr char kSep = '\x1f';
std::string EncodeItem(const queue::Item& item) {
  std::string out;
  for (const std::string* f :
       {&item.profile, &item.tenant, &item.employee_key, &item.dedup_id, &item.event_type,
        &item.occurred_at, &item.trace_id, &item.payload}) {
    out += *f;
    out += kSep;
  }
  return out + std::to_string(item.received_at_ms);
}
std::vector<std::string> SplitFields(const std::string& s) {
  std::vector<std::string> out(1);
  for (char c : s) {
    if (c == kSep) {
      out.emplace_back();
    } else {
      out.back() += c;
    }
  }
  return out;
}
std::optional<queue::Item> DecodeItem(const std::string& s) {
  const std::vector<std::string> f = SplitFields(s);
  if (f.size() != 9) return std::nullopt;
  queue::Item item;
  item.profile = f[0];
  item.tenant = f[1];
  item.employee_key = f[2];
  item.dedup_id = f[3];
  item.event_type = f[4];
  item.occurred_at = f[5];
  item.trace_id = f[6];
  item.payload = f[7];
  item.received_at_ms = std::strtoll(f[8].c_str(), nullptr, 10);
  return item;
}

}  // namespace

Status StoreHeldPlan(redis::Pool& pool, const std::string& key, const HeldPlan& plan) {
  // The summary first, then the items.
  std::vector<std::string> args;
  args.push_back(plan.run_id + kSep + std::to_string(plan.suspensions) + kSep +
                 std::to_string(plan.suspend_limit) + kSep + std::to_string(plan.hris_employees) +
                 kSep + std::to_string(plan.dedup_window_s) + kSep + plan.profile);
  for (const queue::Item& item : plan.items) args.push_back(EncodeItem(item));
  auto conn = pool.Acquire();
  auto r = conn->Eval(StoreHeldScript(), {key}, args);
  if (!r.ok()) return r.error();
  return {};
}

// ---- held plans ---------------------------------------------------------------------------

Result<int64_t> ApplyHeldReconciliations(redis::Pool& pool, queue::Queue& queue,
                                         const std::string& key_prefix, std::ostream& out) {
  auto conn = pool.Acquire();
  std::vector<std::string> keys;
  std::string cursor = "0";
  do {
    auto r =
        conn->Command({"SCAN", cursor, "MATCH",
                       redis::keys::daemon::ReconcileHeldPattern(key_prefix), "COUNT", "1000"});
    if (!r.ok()) return r.error();
    if (r->elements().size() != 2) break;
    cursor = r->elements()[0].text();
    for (const auto& k : r->elements()[1].elements()) keys.push_back(k.text());
  } while (cursor != "0");
  std::sort(keys.begin(), keys.end());
  int64_t total = 0;
  for (const std::string& key : keys) {
    auto r = conn->Command({"LRANGE", key, "0", "-1"});
    if (!r.ok()) return r.error();
    const auto& elements = r->elements();
    if (elements.empty()) continue;
    const std::vector<std::string> head = SplitFields(elements[0].text());
    if (head.size() != 6) {
      out << "skipped " << key << ": not a held plan this version can read; delete it\n";
      continue;
    }
    std::vector<queue::Item> items;
    for (size_t i = 1; i < elements.size(); ++i) {
      auto item = DecodeItem(elements[i].text());
      if (item) items.push_back(std::move(*item));
    }
    const int64_t window = std::max<int64_t>(60, std::strtoll(head[4].c_str(), nullptr, 10));
    int64_t accepted = 0;
    for (size_t i = 0; i < items.size(); i += 500) {
      std::vector<queue::Item> batch(
          items.begin() + static_cast<std::ptrdiff_t>(i),
          items.begin() + static_cast<std::ptrdiff_t>(std::min(items.size(), i + 500)));
      auto enq = queue.EnqueueBatch(batch, window);
      if (!enq.ok()) return enq.error();
      accepted += enq->accepted;
    }
    // The plan is applied: its list is now the one a later run is compared with.
    auto done = conn->Commands(
        {{"DEL", key},
         {"SET", redis::keys::daemon::ReconcileListed(key_prefix, head[5]), head[3]}});
    if (!done.ok()) return done.error();
    log::Warn(
        "held reconciliation plan released",
        {{"profile", head[5]}, {"run", head[0]}, {"suspensions", head[1]}, {"enqueued", accepted}});
    out << "applied the held reconciliation of profile " << head[5] << " (run " << head[0] << ", "
        << head[1] << " suspensions): " << accepted << " sync items enqueued\n";
    total += accepted;
  }
  return total;
}

}  // namespace scimsync::daemon
