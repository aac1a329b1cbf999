#include "fake_scim_server.h"

#include <httplib.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "test_support.h"

namespace scimsync::testing {
namespace {

using rapidjson::Document;
using rapidjson::Value;

constexpr char kUserSchema[] = "urn:ietf:params:scim:schemas:core:2.0:User";
constexpr char kEnterpriseUrn[] = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
constexpr char kErrorSchema[] = "urn:ietf:params:scim:api:messages:2.0:Error";
constexpr char kScimJson[] = "application/scim+json";

std::string Lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool IEquals(const std::string& a, const std::string& b) { return Lower(a) == Lower(b); }

std::string Compact(const Value& v) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  v.Accept(w);
  return std::string(buf.GetString(), buf.GetSize());
}

Value* Find(Value& object, const std::string& name) {
  if (!object.IsObject()) return nullptr;
  for (auto it = object.MemberBegin(); it != object.MemberEnd(); ++it) {
    if (IEquals(it->name.GetString(), name)) return &it->value;
  }
  return nullptr;
}

std::string StringOf(Value& object, const std::string& name) {
  Value* v = Find(object, name);
  return v != nullptr && v->IsString() ? v->GetString() : "";
}

void Remove(Value& object, const std::string& name) {
  for (auto it = object.MemberBegin(); it != object.MemberEnd(); ++it) {
    if (IEquals(it->name.GetString(), name)) {
      object.EraseMember(it);
      return;
    }
  }
}

void Set(Value& object, const std::string& name, Value value, Document::AllocatorType& a) {
  if (Value* v = Find(object, name)) {
    *v = std::move(value);
  } else {
    object.AddMember(Value(name.c_str(), a), std::move(value), a);
  }
}

std::string ErrorBody(int status, const std::string& scim_type, const std::string& detail) {
  Document d;
  d.SetObject();
  auto& a = d.GetAllocator();
  Value schemas(rapidjson::kArrayType);
  schemas.PushBack(Value(kErrorSchema, a), a);
  d.AddMember("schemas", schemas, a);
  d.AddMember("status", Value(std::to_string(status).c_str(), a), a);
  if (!scim_type.empty()) d.AddMember("scimType", Value(scim_type.c_str(), a), a);
  d.AddMember("detail", Value(detail.c_str(), a), a);
  return Compact(d);
}

struct Answer {
  Answer() = default;
  Answer(int s, std::string b = "") : status(s), body(std::move(b)) {}  // NOLINT: {status, body}
  int status = 200;
  std::string body;
  std::string retry_after;
  bool drop = false;
  int64_t delay_ms = 0;
  std::string state;  // a write's stored result
};

Answer Err(int status, const std::string& scim_type, const std::string& detail) {
  return {status, ErrorBody(status, scim_type, detail)};
}

// "attr eq "value"" with the value a JSON string literal.
bool ParseEqFilter(const std::string& filter, std::string* attr, std::string* value) {
  auto sp = filter.find(' ');
  if (sp == std::string::npos) return false;
  *attr = filter.substr(0, sp);
  auto rest = filter.substr(sp + 1);
  if (rest.size() < 3 || Lower(rest.substr(0, 3)) != "eq ") return false;
  std::string literal = rest.substr(3);
  Document d;
  d.Parse(literal.c_str(), literal.size());
  if (d.HasParseError() || !d.IsString()) return false;
  *value = std::string(d.GetString(), d.GetStringLength());
  return true;
}

}  // namespace

struct FakeScimServer::Impl {
  FakeScimOptions options;
  httplib::Server server;
  std::thread thread;
  int port = 0;

  mutable std::mutex mu;
  std::condition_variable stop_cv;
  bool stopping = false;
  struct Entry {
    std::string json;
    std::string user_name;  // lower-cased, for the uniqueness check and userName filters
    std::optional<std::string> external_id;
    bool pending = false;  // password pending: reads say active false
  };
  std::map<std::string, Entry> users;  // id -> user
  // Indexes, so searches stay cheap with thousands of users (benchmarks).
  std::map<std::string, std::set<std::string>> by_user_name;
  std::map<std::string, std::set<std::string>> by_external_id;
  std::deque<Fault> faults;
  std::optional<RandomFaults> random_faults;
  std::mt19937_64 rng{1};
  std::vector<RecordedRequest> log;
  std::map<std::string, int64_t> counts;  // by method, also when requests are not recorded
  int64_t next_id = 1;

  std::string NewId() { return "u" + std::to_string(next_id++); }

  static std::string Now() {
    auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    char buf[32];
    std::tm tm{};
    gmtime_r(&t, &tm);
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
  }

  // Adds id and meta; returns the stored JSON.
  std::string Store(const std::string& id, Document& d, const std::string& created) {
    auto& a = d.GetAllocator();
    Remove(d, "meta");
    Set(d, "id", Value(id.c_str(), a), a);
    Value meta(rapidjson::kObjectType);
    meta.AddMember("resourceType", "User", a);
    meta.AddMember("created", Value(created.c_str(), a), a);
    meta.AddMember("lastModified", Value(Now().c_str(), a), a);
    meta.AddMember("location", Value((options.base_path + "/Users/" + id).c_str(), a), a);
    d.AddMember("meta", meta, a);
    if (Find(d, "schemas") == nullptr) {
      Value schemas(rapidjson::kArrayType);
      schemas.PushBack(Value(kUserSchema, a), a);
      d.AddMember("schemas", schemas, a);
    }
    Entry e;
    e.json = Compact(d);
    e.user_name = Lower(StringOf(d, "userName"));
    Value* ext = Find(d, "externalId");
    if (ext != nullptr && ext->IsString()) e.external_id = ext->GetString();
    if (auto old = users.find(id); old != users.end()) e.pending = old->second.pending;
    Erase(id);
    by_user_name[e.user_name].insert(id);
    if (e.external_id) by_external_id[*e.external_id].insert(id);
    users[id] = e;
    return e.json;
  }

  // A user as answers show it: a pending password reads inactive.
  std::string Render(const Entry& e) const {
    if (!e.pending) return e.json;
    Document d;
    d.Parse(e.json.c_str());
    Set(d, "active", Value(false), d.GetAllocator());
    return Compact(d);
  }

  // A write's answer: the rendered user, and the stored state for the request log.
  Answer Written(int status, const std::string& id) {
    Answer a(status, Render(users.at(id)));
    a.state = users.at(id).json;
    return a;
  }

  bool Erase(const std::string& id) {
    auto it = users.find(id);
    if (it == users.end()) return false;
    by_user_name[it->second.user_name].erase(id);
    if (it->second.external_id) by_external_id[*it->second.external_id].erase(id);
    users.erase(it);
    return true;
  }

  // Another user (not `self`) holding this userName.
  std::string UserNameHolder(const std::string& user_name, const std::string& self) const {
    auto it = by_user_name.find(Lower(user_name));
    if (it == by_user_name.end()) return "";
    for (const auto& id : it->second) {
      if (id != self) return id;
    }
    return "";
  }

  std::vector<std::string> Matching(const std::string& attr, const std::string& value,
                                    bool render = false) const {
    bool by_name = IEquals(attr, "userName");
    const auto& index = by_name ? by_user_name : by_external_id;
    std::vector<std::string> out;
    auto it = index.find(by_name ? Lower(value) : value);
    if (it == index.end()) return out;
    for (const auto& id : it->second) {
      out.push_back(render ? Render(users.at(id)) : users.at(id).json);
    }
    return out;
  }

  Answer List(const std::vector<std::string>& found) {
    std::string body =
        "{\"schemas\":[\"urn:ietf:params:scim:api:messages:2.0:ListResponse\"],"
        "\"totalResults\":" +
        std::to_string(found.size()) +
        ",\"startIndex\":1,\"itemsPerPage\":" + std::to_string(found.size()) + ",\"Resources\":[";
    for (size_t i = 0; i < found.size(); ++i) body += (i ? "," : "") + found[i];
    body += "]}";
    return {200, body};
  }

  Answer CheckUser(Document& d, const std::string& self) {
    if (d.HasParseError() || !d.IsObject())
      return Err(400, "invalidSyntax", "body is not a JSON object");
    std::string user_name = StringOf(d, "userName");
    if (user_name.empty()) return Err(400, "invalidValue", "userName is required");
    std::string holder = UserNameHolder(user_name, self);
    if (!holder.empty()) {
      return Err(409, "uniqueness", "userName " + user_name + " is taken by user " + holder);
    }
    return {0};
  }

  Answer ApplyPatch(Document& user, const Document& patch) {
    auto& a = user.GetAllocator();
    const Value* ops = nullptr;
    if (patch.IsObject()) {
      for (auto it = patch.MemberBegin(); it != patch.MemberEnd(); ++it) {
        if (IEquals(it->name.GetString(), "Operations")) ops = &it->value;
      }
    }
    if (ops == nullptr || !ops->IsArray()) return Err(400, "invalidSyntax", "no Operations");
    for (const auto& op : ops->GetArray()) {
      if (!op.IsObject() || !op.HasMember("op") || !op["op"].IsString()) {
        return Err(400, "invalidSyntax", "operation without op");
      }
      std::string kind = Lower(op["op"].GetString());
      std::string path =
          op.HasMember("path") && op["path"].IsString() ? op["path"].GetString() : "";
      const Value* value = op.HasMember("value") ? &op["value"] : nullptr;
      if (path.empty()) {
        if (kind == "remove" || value == nullptr || !value->IsObject()) {
          return Err(400, "noTarget", "an operation without path needs an object value");
        }
        for (auto it = value->MemberBegin(); it != value->MemberEnd(); ++it) {
          Set(user, it->name.GetString(), Value(it->value, a), a);
        }
        continue;
      }
      // Split "<urn>:attr", "parent.child" or "attr".
      std::string container;
      std::string attr = path;
      std::string urn_prefix = std::string(kEnterpriseUrn) + ":";
      if (path.size() > urn_prefix.size() &&
          IEquals(path.substr(0, urn_prefix.size()), urn_prefix)) {
        container = kEnterpriseUrn;
        attr = path.substr(urn_prefix.size());
      } else if (auto dot = path.find('.'); dot != std::string::npos) {
        container = path.substr(0, dot);
        attr = path.substr(dot + 1);
      }
      if (attr.find('[') != std::string::npos || attr.find('.') != std::string::npos) {
        return Err(400, "invalidPath", "unsupported path " + path);
      }
      if (IEquals(attr, "id") || IEquals(attr, "meta")) {
        return Err(400, "mutability", path + " is read-only");
      }
      Value* target = &user;
      if (!container.empty()) {
        target = Find(user, container);
        if (target == nullptr || !target->IsObject()) {
          if (kind == "remove") continue;
          Remove(user, container);
          user.AddMember(Value(container.c_str(), a), Value(rapidjson::kObjectType), a);
          target = Find(user, container);
        }
      }
      if (kind == "remove") {
        Remove(*target, attr);
      } else if (kind == "replace" || kind == "add") {
        if (value == nullptr) return Err(400, "invalidValue", "operation without value");
        Set(*target, attr, Value(*value, a), a);
      } else {
        return Err(400, "invalidSyntax", "unknown op " + kind);
      }
    }
    return {0};
  }

  Answer Handle(const std::string& method, const std::string& path, const httplib::Request& req) {
    if (path == "/ServiceProviderConfig" && method == "GET") {
      if (!options.service_provider_config) return Err(404, "", "Endpoint Not Found");
      return {200, std::string("{\"schemas\":[\"urn:ietf:params:scim:schemas:core:2.0:"
                               "ServiceProviderConfig\"],\"patch\":{\"supported\":") +
                       (options.patch_supported ? "true" : "false") +
                       "},\"filter\":{\"supported\":true,\"maxResults\":200},"
                       "\"bulk\":{\"supported\":false},\"etag\":{\"supported\":false}}"};
    }
    if (path == "/Users" && method == "GET") {
      if (!req.has_param("filter")) {
        std::vector<std::string> all;
        for (const auto& [id, user] : users) all.push_back(Render(user));
        return List(all);
      }
      std::string attr;
      std::string value;
      if (!ParseEqFilter(req.get_param_value("filter"), &attr, &value) ||
          !(IEquals(attr, "userName") || IEquals(attr, "externalId"))) {
        return Err(400, "invalidFilter", "unsupported filter: " + req.get_param_value("filter"));
      }
      return List(Matching(attr, value, /*render=*/true));
    }
    if (path == "/Users" && method == "POST") {
      Document d;
      d.Parse(req.body.c_str(), req.body.size());
      Answer bad = CheckUser(d, "");
      if (bad.status != 0) return bad;
      std::string id = NewId();
      Store(id, d, Now());
      if (options.pending_password > 0) {
        users.at(id).pending =
            std::uniform_real_distribution<double>(0, 1)(rng) < options.pending_password;
      }
      return Written(201, id);
    }
    if (path.rfind("/Users/", 0) != 0) return Err(404, "", "Endpoint Not Found");
    std::string id = path.substr(7);
    auto it = users.find(id);
    if (it == users.end()) return Err(404, "", "Resource " + id + " not found");
    Document current;
    current.Parse(it->second.json.c_str());
    std::string created;
    if (Value* meta = Find(current, "meta")) created = StringOf(*meta, "created");
    if (method == "GET") return {200, Render(it->second)};
    if (method == "DELETE") {
      Erase(id);
      return {204, ""};
    }
    if (method == "PUT") {
      Document d;
      d.Parse(req.body.c_str(), req.body.size());
      Answer bad = CheckUser(d, id);
      if (bad.status != 0) return bad;
      Store(id, d, created);
      return Written(200, id);
    }
    if (method == "PATCH") {
      if (!options.patch_supported) return Err(501, "", "PATCH is not supported");
      Document patch;
      patch.Parse(req.body.c_str(), req.body.size());
      if (patch.HasParseError()) return Err(400, "invalidSyntax", "body is not JSON");
      Answer bad = ApplyPatch(current, patch);
      if (bad.status != 0) return bad;
      bad = CheckUser(current, id);
      if (bad.status != 0) return bad;
      Store(id, current, created);
      return Written(200, id);
    }
    return Err(405, "", "method not allowed");
  }

  void Serve(const std::string& method, const httplib::Request& req, httplib::Response& res) {
    RecordedRequest rec;
    rec.method = method;
    rec.path = req.path.substr(std::min(req.path.size(), options.base_path.size()));
    rec.target = req.target;
    rec.filter = req.has_param("filter") ? req.get_param_value("filter") : "";
    rec.body = req.body;
    for (const auto& [k, v] : req.headers) rec.headers[Lower(k)] = v;
    rec.arrived_us = std::chrono::duration_cast<std::chrono::microseconds>(
                         std::chrono::steady_clock::now().time_since_epoch())
                         .count();

    Answer answer;
    {
      std::unique_lock lock(mu);
      std::optional<Fault> fault;
      for (auto f = faults.begin(); f != faults.end(); ++f) {
        if ((f->method.empty() || f->method == method) && rec.path.rfind(f->path_prefix, 0) == 0) {
          fault = *f;
          if (--f->times <= 0) faults.erase(f);
          break;
        }
      }
      if (!fault && random_faults && rec.path.rfind("/Users", 0) == 0) {
        double x = std::uniform_real_distribution<double>(0, 1)(rng);
        const RandomFaults& rf = *random_faults;
        if (x < rf.status500) {
          fault = Fault::Status(500);
        } else if (x < rf.status500 + rf.status429) {
          fault = Fault::Status(429, rf.retry_after_429);
        } else if (x < rf.status500 + rf.status429 + rf.drop) {
          fault = Fault::Drop();
        } else if (x < rf.status500 + rf.status429 + rf.drop + rf.apply_then_drop) {
          if (method != "GET") fault = Fault::ApplyThenDrop();
        } else if (x < rf.status500 + rf.status429 + rf.drop + rf.apply_then_drop + rf.delay) {
          fault = Fault::Delay(std::uniform_int_distribution<int64_t>(
              rf.delay_min_ms, std::max(rf.delay_min_ms, rf.delay_max_ms))(rng));
        }
      }
      auto header = [&rec](const char* name) {
        auto it = rec.headers.find(name);
        return it == rec.headers.end() ? std::string() : it->second;
      };
      bool authorized = options.api_key.empty() || header("x-api-key") == options.api_key ||
                        header("authorization") == "Bearer " + options.api_key ||
                        (options.public_discovery && rec.path == "/ServiceProviderConfig");
      if (fault && fault->kind == Fault::Kind::kStatus) {
        answer = Err(fault->status, "", "injected fault");
        answer.retry_after = fault->retry_after;
      } else if (fault && fault->kind == Fault::Kind::kDrop) {
        answer.drop = true;
      } else if (!authorized) {
        answer = Err(401, "", "missing or wrong API key");
      } else {
        answer = Handle(method, rec.path, req);
        if (fault && fault->kind == Fault::Kind::kDelay) answer.delay_ms = fault->delay_ms;
        if (fault && fault->kind == Fault::Kind::kApplyThenDrop) {
          answer.drop = true;
          rec.dropped = true;
        }
      }
      rec.status = answer.drop && !rec.dropped ? 0 : answer.status;
      rec.response = answer.body;
      rec.state = answer.state;
      rec.answered_us = std::chrono::duration_cast<std::chrono::microseconds>(
                            std::chrono::steady_clock::now().time_since_epoch())
                            .count() +
                        answer.delay_ms * 1000;
      answer.delay_ms = std::max(answer.delay_ms, options.latency_ms);
      ++counts[method];
      if (options.record_requests) log.push_back(std::move(rec));
      if (answer.delay_ms > 0) {
        stop_cv.wait_for(lock, std::chrono::milliseconds(answer.delay_ms),
                         [this] { return stopping; });
      }
    }
    if (answer.drop) {
      // Promise a body and send none: the client sees the connection close mid-answer.
      res.set_content_provider(64, "application/json",
                               [](size_t, size_t, httplib::DataSink&) { return false; });
      return;
    }
    res.status = answer.status;
    if (!answer.retry_after.empty()) res.set_header("Retry-After", answer.retry_after);
    if (!answer.body.empty()) res.set_content(answer.body, kScimJson);
  }
};

FakeScimServer::FakeScimServer(FakeScimOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
}

FakeScimServer::~FakeScimServer() { Stop(); }

bool FakeScimServer::Start() {
  Impl* impl = impl_.get();
  auto& s = impl->server;
  s.set_tcp_nodelay(true);
  // Each keep-alive client holds a thread; the default pool (8) would queue a worker pool's
  // connections behind each other.
  int threads = impl->options.threads;
  s.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  if (impl->options.keep_alive_max_requests > 0) {
    s.set_keep_alive_max_count(static_cast<size_t>(impl->options.keep_alive_max_requests));
  }
  std::string pattern = impl->options.base_path + "(/.*)";
  s.Get(pattern, [impl](const auto& req, auto& res) { impl->Serve("GET", req, res); });
  s.Post(pattern, [impl](const auto& req, auto& res) { impl->Serve("POST", req, res); });
  s.Put(pattern, [impl](const auto& req, auto& res) { impl->Serve("PUT", req, res); });
  s.Patch(pattern, [impl](const auto& req, auto& res) { impl->Serve("PATCH", req, res); });
  s.Delete(pattern, [impl](const auto& req, auto& res) { impl->Serve("DELETE", req, res); });
  impl->port = s.bind_to_any_port("127.0.0.1");
  if (impl->port <= 0) return false;
  impl->thread = std::thread([impl] { impl->server.listen_after_bind(); });
  return WaitFor([&s] { return s.is_running(); }, 1000, /*interval_ms=*/2);
}

void FakeScimServer::Stop() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->stop_cv.notify_all();
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

int FakeScimServer::port() const { return impl_->port; }

std::string FakeScimServer::base_url() const {
  return "http://127.0.0.1:" + std::to_string(impl_->port) + impl_->options.base_path;
}

void FakeScimServer::InjectFault(const Fault& fault) {
  std::lock_guard lock(impl_->mu);
  impl_->faults.push_back(fault);
}

size_t FakeScimServer::PendingFaults() const {
  std::lock_guard lock(impl_->mu);
  return impl_->faults.size();
}

void FakeScimServer::SetRandomFaults(const RandomFaults& faults) {
  std::lock_guard lock(impl_->mu);
  impl_->random_faults = faults;
  impl_->rng.seed(faults.seed);
}

void FakeScimServer::SetApiKey(const std::string& key) {
  std::lock_guard lock(impl_->mu);
  impl_->options.api_key = key;
}

void FakeScimServer::ClearFaults() {
  std::lock_guard lock(impl_->mu);
  impl_->faults.clear();
}

void FakeScimServer::set_patch_supported(bool on) {
  std::lock_guard lock(impl_->mu);
  impl_->options.patch_supported = on;
}

std::string FakeScimServer::AddUser(const std::string& json) {
  std::lock_guard lock(impl_->mu);
  Document d;
  d.Parse(json.c_str(), json.size());
  if (d.HasParseError() || !d.IsObject()) return "";
  std::string id = impl_->NewId();
  impl_->Store(id, d, Impl::Now());
  return id;
}

std::optional<std::string> FakeScimServer::GetUser(const std::string& id) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->users.find(id);
  if (it == impl_->users.end()) return std::nullopt;
  return it->second.json;
}

std::vector<std::string> FakeScimServer::Users() const {
  std::lock_guard lock(impl_->mu);
  std::vector<std::string> out;
  for (const auto& [id, user] : impl_->users) out.push_back(user.json);
  return out;
}

size_t FakeScimServer::user_count() const {
  std::lock_guard lock(impl_->mu);
  return impl_->users.size();
}

bool FakeScimServer::RemoveUser(const std::string& id) {
  std::lock_guard lock(impl_->mu);
  return impl_->Erase(id);
}

std::vector<std::string> FakeScimServer::FindUsers(const std::string& attribute,
                                                   const std::string& value) const {
  std::lock_guard lock(impl_->mu);
  return impl_->Matching(attribute, value);
}

std::vector<RecordedRequest> FakeScimServer::requests() const {
  std::lock_guard lock(impl_->mu);
  return impl_->log;
}

void FakeScimServer::ClearRequests() {
  std::lock_guard lock(impl_->mu);
  impl_->log.clear();
  impl_->counts.clear();
}

int64_t FakeScimServer::TotalRequests(const std::string& method) const {
  std::lock_guard lock(impl_->mu);
  if (method.empty()) {
    int64_t n = 0;
    for (const auto& [m, c] : impl_->counts) n += c;
    return n;
  }
  auto it = impl_->counts.find(method);
  return it == impl_->counts.end() ? 0 : it->second;
}

int FakeScimServer::CountRequests(const std::string& method, const std::string& path_prefix) const {
  std::lock_guard lock(impl_->mu);
  return static_cast<int>(std::count_if(impl_->log.begin(), impl_->log.end(), [&](const auto& r) {
    return r.method == method && r.path.rfind(path_prefix, 0) == 0;
  }));
}

}  // namespace scimsync::testing
