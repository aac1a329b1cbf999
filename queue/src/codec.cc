#include "codec.h"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <charconv>
#include <cstdint>

namespace scimsync::queue {

int PartitionOf(const std::string& profile, const std::string& employee_key, int partitions) {
  if (partitions <= 1) return 0;
  constexpr uint64_t kOffset = 14695981039346656037ULL;
  constexpr uint64_t kPrime = 1099511628211ULL;
  uint64_t h = kOffset;
  auto mix = [&h](unsigned char c) {
    h ^= c;
    h *= kPrime;
  };
  for (char c : profile) mix(static_cast<unsigned char>(c));
  mix(0);
  for (char c : employee_key) mix(static_cast<unsigned char>(c));
  return static_cast<int>(h % static_cast<uint64_t>(partitions));
}

std::string AppliedField(const std::string& profile, const std::string& tenant,
                         const std::string& employee_key) {
  return profile + '\x1f' + tenant + '\x1f' + employee_key;
}

namespace {
constexpr const char kFencedPrefix[] = "fenced: ";
}  // namespace

Error FencedError(const Fence& fence, const std::string& found) {
  return Error::Transient(std::string(kFencedPrefix) + fence.key + " holds " +
                          (found.empty() ? "nothing" : found) + ", not " +
                          std::to_string(fence.value) +
                          " (whoever took over the fence records the outcome now); nothing was "
                          "written");
}

bool IsFenced(const Error& error) { return error.message.rfind(kFencedPrefix, 0) == 0; }

namespace internal {
namespace {

int64_t ToInt(const std::string& s) {
  int64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

const std::string* Find(const std::map<std::string, std::string>& m, const char* key) {
  auto it = m.find(key);
  return it == m.end() ? nullptr : &it->second;
}

void Set(const std::map<std::string, std::string>& m, const char* key, std::string* out) {
  if (const std::string* v = Find(m, key)) *out = *v;
}

}  // namespace

const std::vector<std::string>& StreamFieldNames() {
  static const std::vector<std::string> kNames = {"profile",  "tenant",     "employee",
                                                  "dedup_id", "event_type", "occurred_at",
                                                  "trace_id", "payload",    "received_at_ms"};
  return kNames;
}

std::vector<std::string> StreamValues(const Item& item) {
  return {item.profile,  item.tenant,     item.employee_key,
          item.dedup_id, item.event_type, item.occurred_at,
          item.trace_id, item.payload,    std::to_string(item.received_at_ms)};
}

void AppendItemPairs(const Item& item, std::vector<std::string>* out) {
  const auto& names = StreamFieldNames();
  std::vector<std::string> values = StreamValues(item);
  for (size_t i = 0; i < names.size(); ++i) {
    out->push_back(names[i]);
    out->push_back(std::move(values[i]));
  }
  out->insert(out->end(), {"attempts", std::to_string(item.attempts), "partition",
                           std::to_string(item.partition), "entry_id", item.entry_id, "last_error",
                           item.last_error});
}

Item ItemFromFields(const std::map<std::string, std::string>& f) {
  Item item;
  Set(f, "profile", &item.profile);
  Set(f, "tenant", &item.tenant);
  Set(f, "employee", &item.employee_key);
  Set(f, "dedup_id", &item.dedup_id);
  Set(f, "event_type", &item.event_type);
  Set(f, "occurred_at", &item.occurred_at);
  Set(f, "trace_id", &item.trace_id);
  Set(f, "payload", &item.payload);
  Set(f, "last_error", &item.last_error);
  Set(f, "entry_id", &item.entry_id);
  if (const std::string* v = Find(f, "received_at_ms")) item.received_at_ms = ToInt(*v);
  if (const std::string* v = Find(f, "attempts")) item.attempts = static_cast<int>(ToInt(*v));
  if (const std::string* v = Find(f, "partition")) item.partition = static_cast<int>(ToInt(*v));
  return item;
}

std::string ItemToJson(const Item& item) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  auto str = [&w](const char* key, const std::string& value) {
    w.Key(key);
    w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
  };
  w.StartObject();
  str("profile", item.profile);
  str("tenant", item.tenant);
  str("employee", item.employee_key);
  str("dedup_id", item.dedup_id);
  str("event_type", item.event_type);
  str("occurred_at", item.occurred_at);
  str("trace_id", item.trace_id);
  str("payload", item.payload);
  w.Key("received_at_ms");
  w.Int64(item.received_at_ms);
  str("entry_id", item.entry_id);
  w.Key("partition");
  w.Int(item.partition);
  w.Key("attempts");
  w.Int(item.attempts);
  str("last_error", item.last_error);
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

Result<Item> ItemFromJson(const std::string& json) {
  rapidjson::Document doc;
  doc.Parse(json.data(), json.size());
  if (doc.HasParseError() || !doc.IsObject()) {
    return Error::Permanent("a retry-set entry is not a JSON object; was it written by scimsync?");
  }
  Item item;
  auto str = [&doc](const char* key, std::string* out) {
    auto it = doc.FindMember(key);
    if (it != doc.MemberEnd() && it->value.IsString()) {
      out->assign(it->value.GetString(), it->value.GetStringLength());
    }
  };
  auto num = [&doc](const char* key) -> int64_t {
    auto it = doc.FindMember(key);
    if (it != doc.MemberEnd() && it->value.IsInt64()) return it->value.GetInt64();
    return 0;
  };
  str("profile", &item.profile);
  str("tenant", &item.tenant);
  str("employee", &item.employee_key);
  str("dedup_id", &item.dedup_id);
  str("event_type", &item.event_type);
  str("occurred_at", &item.occurred_at);
  str("trace_id", &item.trace_id);
  str("payload", &item.payload);
  str("entry_id", &item.entry_id);
  str("last_error", &item.last_error);
  item.received_at_ms = num("received_at_ms");
  item.partition = static_cast<int>(num("partition"));
  item.attempts = static_cast<int>(num("attempts"));
  return item;
}

DeadLetterEntry DeadLetterFromFields(const std::string& id,
                                     const std::map<std::string, std::string>& f) {
  DeadLetterEntry e;
  e.id = id;
  e.item = ItemFromFields(f);
  Set(f, "error_kind", &e.error_kind);
  Set(f, "reason", &e.reason);
  Set(f, "last_request", &e.last_request);
  Set(f, "last_response", &e.last_response);
  if (const std::string* v = Find(f, "dead_at_ms")) e.dead_at_ms = ToInt(*v);
  return e;
}

void AppendDeadLetterPairs(const Item& item, const std::string& error_kind,
                           const std::string& reason, const std::string& last_request,
                           const std::string& last_response, int64_t dead_at_ms,
                           std::vector<std::string>* out) {
  AppendItemPairs(item, out);
  out->insert(out->end(),
              {"error_kind", error_kind, "reason", reason, "last_request", last_request,
               "last_response", last_response, "dead_at_ms", std::to_string(dead_at_ms)});
}

Status CheckPartition(int partition, int partitions) {
  if (partition < 0 || partition >= partitions) {
    return Error::Invalid("partition " + std::to_string(partition) + " is outside 0.." +
                          std::to_string(partitions - 1) + " (redis.partitions)");
  }
  return {};
}

}  // namespace internal
}  // namespace scimsync::queue
