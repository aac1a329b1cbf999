// Both transports. cpp-httplib's errors become scimsync::Error here and nowhere else.
#include "scimsync/scim/transport.h"

#include <httplib.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <utility>
#include <vector>

#include "json_util.h"
#include "scimsync/clock.h"
#include "scimsync/log.h"
#include "scimsync/scim/protocol.h"

namespace scimsync::scim {
namespace {

constexpr char kScimJson[] = "application/scim+json";
constexpr char kUserAgent[] = "scimsync/0.1";
constexpr char kRedacted[] = "[redacted]";

bool IsBearer(const std::string& auth_header) {
  return json::EqualsIgnoreCase(auth_header, "bearer") ||
         json::EqualsIgnoreCase(auth_header, "authorization");
}

// The request headers, in the order they are sent. With `redact`, secret values are replaced.
std::vector<std::pair<std::string, std::string>> RequestHeaders(const TransportOptions& o,
                                                                const HttpRequest& req,
                                                                bool redact) {
  std::vector<std::pair<std::string, std::string>> h;
  h.emplace_back("Accept", kScimJson);
  if (!req.body.empty()) h.emplace_back("Content-Type", kScimJson);
  if (IsBearer(o.auth_header)) {
    h.emplace_back("Authorization",
                   redact ? std::string("Bearer ") + kRedacted : "Bearer " + o.api_key);
  } else {
    h.emplace_back(o.auth_header.empty() ? "x-api-key" : o.auth_header,
                   redact ? kRedacted : o.api_key);
  }
  if (!o.org_id.empty()) h.emplace_back("x-org-id", o.org_id);
  return h;
}

bool IsHeaderName(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (!(std::isalnum(u) || c == '-' || c == '_' || c == '.' || c == '!' || c == '#' || c == '$' ||
          c == '%' || c == '&' || c == '\'' || c == '*' || c == '+' || c == '^' || c == '`' ||
          c == '|' || c == '~')) {
      return false;
    }
  }
  return true;
}

struct BaseUrl {
  std::string scheme;
  std::string host;
  int port = 0;
  std::string path;    // no trailing slash
  std::string origin;  // scheme://host[:port]
};

Result<BaseUrl> CheckOptions(const TransportOptions& o, bool need_key) {
  config::UrlParts parts;
  if (!config::ParseUrl(o.base_url, &parts) || parts.host.empty() ||
      (parts.scheme != "https" && parts.scheme != "http")) {
    return Error::Invalid("target.base_url \"" + o.base_url +
                          "\" is not an http(s) URL; use e.g. https://api.jumpcloud.com/scim/v2");
  }
  if (parts.scheme == "http" && !config::IsLoopbackHost(parts.host)) {
    return Error::Invalid(
        "target.base_url must use https:// (plain http is allowed only for "
        "loopback hosts such as 127.0.0.1)");
  }
  if (need_key && o.api_key.empty()) {
    return Error::Invalid(
        "the SCIM API key is empty: set target.api_key_env or "
        "target.api_key_file to the JumpCloud API key");
  }
  if (!IsBearer(o.auth_header) && !o.auth_header.empty() && !IsHeaderName(o.auth_header)) {
    return Error::Invalid("target.auth_header must be x-api-key, bearer, or an HTTP header name");
  }
  if (o.org_id.find_first_of("\r\n") != std::string::npos) {
    return Error::Invalid("target.org_id must not contain line breaks");
  }
  BaseUrl b;
  b.scheme = parts.scheme;
  b.host = parts.host;
  b.port = parts.port;
  b.path = parts.path;
  while (!b.path.empty() && b.path.back() == '/') b.path.pop_back();
  std::string host =
      parts.host.find(':') != std::string::npos ? "[" + parts.host + "]" : parts.host;
  b.origin = b.scheme + "://" + host;
  if (parts.port != 0) b.origin += ":" + std::to_string(parts.port);
  return b;
}

// The one place where cpp-httplib's errors are translated.
Error TransportError(httplib::Error err, const std::string& what, int64_t timeout_ms) {
  std::string timeout = " (timeout " + std::to_string(timeout_ms) + " ms)";
  switch (err) {
    case httplib::Error::Connection:
      // Refused or unreachable: no timeout was involved, so none is named.
      return Error::Transient(what + ": cannot connect: connection refused or host unreachable");
    case httplib::Error::ConnectionTimeout:
      return Error::Transient(what + ": connect timed out" + timeout);
    case httplib::Error::Read:
      return Error::Transient(what + ": no complete answer (timed out or connection closed)" +
                              timeout);
    case httplib::Error::Write:
      return Error::Transient(what + ": sending failed (connection closed)" + timeout);
    case httplib::Error::SSLConnection:
      return Error::Transient(what + ": TLS handshake failed");
    case httplib::Error::SSLServerVerification:
      // Retried rather than dead-lettered: nothing is wrong with the event, and once the admin
      // fixes the CA setup every waiting job goes through.
      return Error::Transient(what +
                              ": the server's TLS certificate is not trusted or does not match "
                              "the host name; set target.ca_file to the CA bundle that signed it");
    case httplib::Error::SSLLoadingCerts:
      return Error::Invalid(what + ": cannot load CA certificates; check target.ca_file");
    case httplib::Error::Canceled:
    case httplib::Error::BindIPAddress:
    case httplib::Error::Unknown:
      return Error::Transient(what + ": request failed (" + httplib::to_string(err) + ")");
    default:
      return Error::Permanent(what + ": request failed (" + httplib::to_string(err) + ")");
  }
}

struct StoreDeleter {
  void operator()(X509_STORE* s) const { X509_STORE_free(s); }
};
using StorePtr = std::unique_ptr<X509_STORE, StoreDeleter>;

class HttpTransport final : public Transport {
 public:
  HttpTransport(TransportOptions options, BaseUrl base, StorePtr extra_cas)
      : options_(std::move(options)), base_(std::move(base)), client_(base_.origin) {
    client_.set_tcp_nodelay(true);
    client_.set_keep_alive(true);
    client_.set_follow_location(false);
    client_.enable_server_certificate_verification(!options_.insecure_skip_verify);
    // The TLS context takes the store over. cpp-httplib then adds the system's default CA
    // paths to it, so target.ca_file extends the system store instead of replacing it.
    if (extra_cas && base_.scheme == "https") client_.set_ca_cert_store(extra_cas.release());
  }

  Result<HttpResponse> Send(const HttpRequest& req, int64_t timeout_ms) override {
    httplib::Headers headers;
    for (auto& [k, v] : RequestHeaders(options_, req, false)) {
      if (k != "Content-Type") headers.emplace(k, v);
    }
    headers.emplace("User-Agent", kUserAgent);
    auto timeout = std::chrono::milliseconds(std::max<int64_t>(timeout_ms, 1));
    client_.set_connection_timeout(timeout);
    client_.set_read_timeout(timeout);
    client_.set_write_timeout(timeout);
    std::string path = base_.path + req.target;
    httplib::Result r = [&]() {
      if (req.method == "GET") return client_.Get(path, headers);
      if (req.method == "POST") return client_.Post(path, headers, req.body, kScimJson);
      if (req.method == "PUT") return client_.Put(path, headers, req.body, kScimJson);
      if (req.method == "PATCH") return client_.Patch(path, headers, req.body, kScimJson);
      return client_.Delete(path, headers);
    }();
    if (!r) return TransportError(r.error(), Describe(req), timeout_ms);
    HttpResponse out;
    out.status = r->status;
    out.body = r->body;
    out.retry_after = r->get_header_value("Retry-After");
    out.location = r->get_header_value("Location");
    return out;
  }

  std::string Describe(const HttpRequest& req) const override {
    return req.method + " " + base_.origin + base_.path + req.target;
  }

 private:
  const TransportOptions options_;
  const BaseUrl base_;
  httplib::Client client_;
};

class DryRunTransport final : public Transport {
 public:
  DryRunTransport(TransportOptions options, BaseUrl base, std::string file)
      : options_(std::move(options)), base_(std::move(base)), file_(std::move(file)) {}

  Result<HttpResponse> Send(const HttpRequest& req, int64_t /*timeout_ms*/) override {
    std::string body = RedactBody(req.body);
    std::string line = "{\"ts_ms\":" + std::to_string(SystemClock::Instance().NowMs()) +
                       ",\"method\":" + json::Quote(req.method) +
                       ",\"url\":" + json::Quote(base_.origin + base_.path + req.target) +
                       ",\"headers\":{";
    bool first = true;
    for (auto& [k, v] : RequestHeaders(options_, req, true)) {
      if (!first) line += ",";
      first = false;
      line += json::Quote(k) + ":" + json::Quote(v);
    }
    line += "}";
    if (!body.empty()) {
      rapidjson::Document doc;
      line += ",\"body\":" + (json::Parse(body, &doc) ? json::Compact(doc) : json::Quote(body));
    }
    line += "}\n";
    {
      std::lock_guard lock(mu_);
      std::ofstream out(file_, std::ios::app | std::ios::binary);
      out << line;
      out.flush();
      if (!out) {
        return Error::Transient("dry run: cannot append to " + file_ +
                                " (target.dry_run_file); check the directory's permissions");
      }
    }
    log::Info("dry run: request not sent",
              {{"method", req.method}, {"url", base_.origin + base_.path + req.target}});
    return Answer(req);
  }

  std::string Describe(const HttpRequest& req) const override {
    return req.method + " " + base_.origin + base_.path + req.target + " (dry run)";
  }

  bool dry_run() const override { return true; }

 private:
  HttpResponse Answer(const HttpRequest& req) {
    HttpResponse r;
    if (req.method == "GET") {
      if (req.target.rfind("/Users?", 0) == 0) {
        r.status = 200;
        r.body = std::string("{\"schemas\":[\"") + kListResponseSchema +
                 "\"],\"totalResults\":0,\"Resources\":[]}";
      } else {
        r.status = 404;
        r.body = std::string("{\"schemas\":[\"") + kErrorSchema +
                 "\"],\"status\":\"404\",\"detail\":\"dry run: treated as absent\"}";
      }
    } else if (req.method == "POST") {
      r.status = 201;
      rapidjson::Document doc;
      if (json::Parse(req.body, &doc) && doc.IsObject()) {
        std::string id = "dry-run-" + std::to_string(++created_);
        doc.AddMember("id", json::StringValue(id, doc.GetAllocator()), doc.GetAllocator());
        r.body = json::Compact(doc);
      }
    } else if (req.method == "PUT") {
      r.status = 200;
      r.body = req.body;
    } else {
      r.status = 204;
    }
    return r;
  }

  const TransportOptions options_;
  const BaseUrl base_;
  const std::string file_;
  std::mutex mu_;
  std::atomic<int64_t> created_{0};
};

}  // namespace

TransportOptions TransportOptions::From(const config::TargetOptions& target, std::string api_key) {
  TransportOptions o;
  o.base_url = target.base_url;
  o.api_key = std::move(api_key);
  o.auth_header = target.auth_header;
  o.org_id = target.org_id;
  o.ca_file = target.ca_file;
  o.insecure_skip_verify = target.insecure_skip_verify;
  return o;
}

Result<std::unique_ptr<Transport>> NewHttpTransport(const TransportOptions& options) {
  auto base = CheckOptions(options, true);
  if (!base.ok()) return base.error();
  StorePtr extra_cas;
  if (!options.ca_file.empty()) {
    std::ifstream probe(options.ca_file);
    if (!probe) {
      return Error::Invalid("target.ca_file " + options.ca_file +
                            " cannot be read; give a PEM bundle readable by scimsync");
    }
    extra_cas.reset(X509_STORE_new());
    if (!extra_cas || X509_STORE_load_file(extra_cas.get(), options.ca_file.c_str()) != 1) {
      return Error::Invalid("target.ca_file " + options.ca_file +
                            " holds no PEM certificates OpenSSL can load");
    }
  }
  if (options.insecure_skip_verify && base->scheme == "https") {
    log::Warn(
        "target.insecure_skip_verify is on: the SCIM server's certificate is not checked, "
        "so the API key can be stolen by anyone on the path",
        {{"base_url", options.base_url}});
  }
  return std::unique_ptr<Transport>(
      std::make_unique<HttpTransport>(options, std::move(*base), std::move(extra_cas)));
}

Result<std::unique_ptr<Transport>> NewDryRunTransport(const TransportOptions& options,
                                                      const std::string& file) {
  auto base = CheckOptions(options, false);
  if (!base.ok()) return base.error();
  if (file.empty()) return Error::Invalid("target.dry_run_file must name a file for a dry run");
  std::error_code ec;
  auto parent = std::filesystem::path(file).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  if (ec) {
    return Error::Invalid("target.dry_run_file: cannot create " + parent.string() + ": " +
                          ec.message());
  }
  std::ofstream probe(file, std::ios::app);
  if (!probe) {
    return Error::Invalid("target.dry_run_file " + file +
                          " cannot be opened for appending; check the path and permissions");
  }
  return std::unique_ptr<Transport>(
      std::make_unique<DryRunTransport>(options, std::move(*base), file));
}

}  // namespace scimsync::scim
