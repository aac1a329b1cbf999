#include "scimsync/connectors/map_command.h"

#include <rapidjson/document.h>
#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>

#include "eval.h"
#include "ingest.h"
#include "json.h"
#include "profile_impl.h"
#include "scimsync/config.h"
#include "scimsync/connectors/profile.h"
#include "scimsync/scim/protocol.h"

namespace scimsync::connectors {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitUsage = 64;
constexpr int kExitDataError = 65;
constexpr int kExitConfig = 78;

constexpr char kUsage[] =
    "usage: scimsyncd map --config FILE --profile NAME PAYLOAD [--header 'Name: value' ...]\n"
    "                     [--record RECORD.json] [--verify] [--now UNIX_SECONDS]\n"
    "                     [--tenant TENANT] [--content-type TYPE]\n"
    "  PAYLOAD        the webhook body, as the HRIS sent it ('-' reads stdin)\n"
    "  --header       a request header (repeat); Content-Type may be given here\n"
    "  --record       the HRIS API's answer, standing in for the fetch-back (for profiles with\n"
    "                 several requests: a JSON object with one member per request name)\n"
    "  --verify       check the request's auth with the profile's configured secret\n"
    "  --now          the time to check timestamps and dates against (default: now)\n"
    "  --tenant       the /webhooks/{profile}/{tenant} segment\n"
    "Prints JSON: the HTTP status scimsyncd would answer, each item's outcome (act,\n"
    "acknowledge: answered 2xx but not about an employee, or refuse: the request is answered\n"
    "4xx) and why. Exits 0 (also when items are only acknowledged), or 65 on a decoding,\n"
    "mapping or verification error.\n";

struct Options {
  std::string config;
  std::string profile;
  std::string payload;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string record;
  bool verify = false;
  std::optional<int64_t> now;
  std::string tenant;
  std::string content_type;
};

bool ReadAll(const std::string& path, std::string* out) {
  if (path == "-") {
    std::ostringstream ss;
    ss << std::cin.rdbuf();
    *out = ss.str();
    return true;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

bool ParseArgs(std::vector<std::string> args, Options* o, std::string* error) {
  if (!args.empty() && args[0] == "map") args.erase(args.begin());
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](std::string* dst) {
      if (i + 1 >= args.size()) {
        *error = a + " needs a value";
        return false;
      }
      *dst = args[++i];
      return true;
    };
    if (a == "--config") {
      if (!value(&o->config)) return false;
    } else if (a == "--profile") {
      if (!value(&o->profile)) return false;
    } else if (a == "--record") {
      if (!value(&o->record)) return false;
    } else if (a == "--tenant") {
      if (!value(&o->tenant)) return false;
    } else if (a == "--content-type") {
      if (!value(&o->content_type)) return false;
    } else if (a == "--verify") {
      o->verify = true;
    } else if (a == "--now") {
      std::string v;
      if (!value(&v)) return false;
      char* end = nullptr;
      long long n = std::strtoll(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0') {
        *error = "--now takes Unix seconds, e.g. --now 1795000000";
        return false;
      }
      o->now = n;
    } else if (a == "--header" || a == "-H") {
      std::string h;
      if (!value(&h)) return false;
      auto colon = h.find(':');
      if (colon == std::string::npos || colon == 0) {
        *error = "--header takes 'Name: value' (got '" + h + "')";
        return false;
      }
      o->headers.emplace_back(internal::Trim(h.substr(0, colon)),
                              internal::Trim(h.substr(colon + 1)));
    } else if (a == "--help" || a == "-h") {
      *error = "";
      return false;
    } else if (!a.empty() && a[0] == '-' && a != "-") {
      *error = "unknown option " + a;
      return false;
    } else if (o->payload.empty()) {
      o->payload = a;
    } else {
      *error = "only one PAYLOAD file (got '" + o->payload + "' and '" + a + "')";
      return false;
    }
  }
  if (o->config.empty())
    *error = "--config FILE is required";
  else if (o->profile.empty())
    *error = "--profile NAME is required";
  else if (o->payload.empty())
    *error = "PAYLOAD is required (a file, or - for stdin)";
  return error->empty();
}

// Canned answers are the only answers: map never touches the network.
class OfflineFetcher final : public Fetcher {
 public:
  Result<HttpResponse> Fetch(const std::string& name, const HttpRequest& request) override {
    if (name == "oauth2_token") {
      HttpResponse r;
      r.status = 200;
      r.body = R"({"access_token":"offline","expires_in":3600})";
      return r;
    }
    return Error::Permanent("this profile fetches the record (" + request.method + " " +
                            request.url.substr(0, request.url.find('?')) +
                            "); map makes no network calls: pass the HRIS answer with --record "
                            "FILE");
  }
  bool live() const override { return false; }
};

using Writer = rapidjson::PrettyWriter<rapidjson::StringBuffer>;

void Str(Writer& w, const char* key, const std::string& value) {
  w.Key(key);
  w.String(value.c_str(), static_cast<rapidjson::SizeType>(value.size()));
}

void RawJson(Writer& w, const std::string& json) {
  rapidjson::Document doc;
  doc.Parse(json.c_str(), json.size());
  doc.Accept(w);
}

}  // namespace

int RunMapCommand(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  Options o;
  std::string error;
  if (!ParseArgs(args, &o, &error)) {
    if (!error.empty()) err << "scimsyncd map: " << error << "\n";
    err << kUsage;
    return error.empty() ? kExitOk : kExitUsage;
  }
  config::Config cfg;
  std::vector<config::Problem> problems = config::LoadFile(o.config, &cfg);
  if (!problems.empty()) {
    err << o.config << ": the config does not load:\n";
    for (const auto& p : problems) err << "  " << p.ToString() << "\n";
    return kExitConfig;
  }
  const config::ProfileConfig* entry = config::FindProfile(cfg, o.profile);
  if (entry == nullptr) {
    err << "scimsyncd map: no profile named '" << o.profile << "' in " << o.config
        << " (profiles: " << config::ProfileNames(cfg) << ")\n";
    return kExitConfig;
  }
  // A dry run writes nothing: drop the handshake's token file from this copy of the entry.
  config::ProfileConfig dry = *entry;
  dry.node = YAML::Clone(entry->node);
  if (dry.node.IsMap()) dry.node.remove("verification_token_file");
  config::Problems profile_problems(o.config);
  auto profile = LoadProfile(dry, &profile_problems);
  if (!profile) {
    err << o.config << ": profile '" << o.profile << "' does not load:\n";
    for (const auto& p : profile_problems.list()) err << "  " << p.ToString() << "\n";
    return kExitConfig;
  }
  const auto* spec_profile = dynamic_cast<const internal::SpecProfile*>(profile.get());

  Request request;
  if (!ReadAll(o.payload, &request.body)) {
    err << "scimsyncd map: cannot read payload file " << o.payload << "\n";
    return kExitUsage;
  }
  request.headers = o.headers;
  request.tenant = o.tenant;
  request.content_type = o.content_type;
  for (const auto& [k, v] : o.headers) {
    if (internal::NormalizeHeaderName(k) == "content-type" && o.content_type.empty()) {
      request.content_type = v;
    }
  }
  std::string recorded;
  if (!o.record.empty() && !ReadAll(o.record, &recorded)) {
    err << "scimsyncd map: cannot read record file " << o.record << "\n";
    return kExitUsage;
  }
  const int64_t now = o.now.value_or(std::chrono::duration_cast<std::chrono::seconds>(
                                         std::chrono::system_clock::now().time_since_epoch())
                                         .count());

  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.SetIndent(' ', 2);
  bool failed = false;
  w.StartObject();
  Str(w, "profile", entry->name);
  Str(w, "connector", entry->connector);
  if (o.verify) {
    w.Key("verify");
    w.StartObject();
    if (spec_profile != nullptr)
      Str(w, "recipe", internal::DescribeAuth(spec_profile->spec().auth));
    std::vector<std::string> secrets;
    std::string secret_error;
    for (const auto& ref : entry->secrets) {
      auto s = config::ResolveSecret(ref);
      if (!s.ok()) {
        secret_error =
            "the configured secret (" + ref.Describe() + ") cannot be read: " + s.error().message;
        break;
      }
      secrets.push_back(std::move(s.value()));
    }
    Status st = secret_error.empty() ? profile->Verify(request, secrets, now)
                                     : Status(Error::Invalid(secret_error));
    w.Key("ok");
    w.Bool(st.ok());
    if (!st.ok()) {
      failed = true;
      Str(w, "error", st.error().message);
    }
    w.Key("headers_received");
    w.StartArray();
    for (const auto& [k, v] : request.headers) w.String(k.c_str());
    w.EndArray();
    w.EndObject();
  }
  auto decoded = profile->Decode(request);
  if (!decoded.ok()) {
    failed = true;
    // What scimsyncd would answer: the request is refused whole, nothing is queued.
    Str(w, "outcome", "refuse");
    Str(w, "error", decoded.error().message);
    w.Key("http_status");
    w.Int(decoded.error().http_status != 0 ? decoded.error().http_status : 400);
  } else {
    w.Key("http_status");
    w.Int(decoded->handshake                                         ? decoded->handshake_status
          : decoded->items.empty() && !decoded->acknowledged.empty() ? 200
                                                                     : 202);
    // Validly signed, well-formed, not about an employee: answered 2xx, counted, not queued.
    w.Key("acknowledged");
    w.StartArray();
    for (const AcknowledgedItem& a : decoded->acknowledged) {
      w.StartObject();
      Str(w, "event_type", a.event_type);
      Str(w, "outcome", "acknowledge");
      Str(w, "why", a.reason);
      w.EndObject();
    }
    w.EndArray();
    w.Key("handshake");
    w.Bool(decoded->handshake);
    if (decoded->handshake) {
      w.Key("handshake_status");
      w.Int(decoded->handshake_status);
      Str(w, "handshake_note", decoded->handshake_note);
    }
    std::unique_ptr<Fetcher> fetcher;
    if (!o.record.empty())
      fetcher = NewRecordedFetcher(recorded);
    else
      fetcher = std::make_unique<OfflineFetcher>();
    w.Key("items");
    w.StartArray();
    for (size_t i = 0; i < decoded->items.size(); ++i) {
      const DecodedItem& item = decoded->items[i];
      w.StartObject();
      w.Key("index");
      w.Uint64(i);
      Str(w, "employee_key", item.employee_key);
      Str(w, "dedup_id", item.dedup_id);
      Str(w, "event_type", item.event_type);
      Str(w, "occurred_at", item.occurred_at);
      const std::string& tenant = request.tenant.empty() ? item.tenant : request.tenant;
      if (!tenant.empty()) Str(w, "tenant", tenant);
      WorkItem work{tenant, item.employee_key, item.event_type, item.occurred_at, item.payload};
      auto plan = profile->PlanItem(work, *fetcher, now);
      if (!plan.ok()) {
        failed = true;
        Str(w, "error", plan.error().message);
        Str(w, "error_kind", ErrorKindName(plan.error().kind));
      } else {
        // act: queued and applied; acknowledge: queued, but a rule says there is nothing to do.
        Str(w, "outcome", plan->action == Action::kIgnore ? "acknowledge" : "act");
        Str(w, "action", ActionName(plan->action));
        Str(w, "reason", plan->reason);
        if (plan->effective_at_s) {
          w.Key("effective_at");
          w.Int64(*plan->effective_at_s);
        }
        if (plan->recheck_at_s) {
          w.Key("recheck_at");
          w.Int64(*plan->recheck_at_s);
        }
        if (!plan->version.empty()) Str(w, "version", plan->version);
        w.Key("fetched");
        w.Bool(plan->fetched);
        if (plan->user) {
          w.Key("user");
          // The body a create sends (scim::CreateBody, what the converger POSTs), passwords
          // redacted as in the dry-run file.
          RawJson(w, scim::RedactBody(scim::CreateBody(*plan->user)));
        }
        w.Key("problems");
        w.StartArray();
        for (const auto& p : plan->problems) {
          w.StartObject();
          Str(w, "field", p.field);
          Str(w, "rule", p.rule);
          w.EndObject();
        }
        w.EndArray();
        if (!plan->problems.empty()) failed = true;
      }
      w.EndObject();
    }
    w.EndArray();
  }
  w.EndObject();
  out << buf.GetString() << "\n";
  return failed ? kExitDataError : kExitOk;
}

}  // namespace scimsync::connectors
