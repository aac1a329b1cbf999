// Fetchers: cpp-httplib over TLS, and canned answers. cpp-httplib's errors are translated here
// and nowhere else.
#include <httplib.h>

#include "eval.h"
#include "json.h"
#include "scimsync/config.h"
#include "scimsync/connectors/profile.h"
#include "scimsync/strings.h"

namespace scimsync::connectors {
namespace {

// "GET https://api.example.com/v1/employees/42": the query is left out, since some APIs take
// keys there.
std::string Describe(const HttpRequest& request) {
  return request.method + " " + request.url.substr(0, request.url.find('?'));
}

class HttplibFetcher final : public Fetcher {
 public:
  explicit HttplibFetcher(HttpFetcherOptions options) : options_(std::move(options)) {}

  Result<HttpResponse> Fetch(const std::string& /*name*/, const HttpRequest& request) override {
    config::UrlParts url;
    if (!config::ParseUrl(request.url, &url) || (url.scheme != "https" && url.scheme != "http")) {
      return Error::Permanent("not an http(s) URL: " + Describe(request));
    }
    if (url.scheme == "http" && !config::IsLoopbackHost(url.host)) {
      return Error::Permanent("refusing plain http to " + url.host +
                              ": HRIS credentials travel only over https");
    }
    std::string origin = url.scheme + "://" + url.host;
    if (url.port != 0) origin += ":" + std::to_string(url.port);
    httplib::Client client(origin);
    client.enable_server_certificate_verification(true);
    if (!options_.ca_file.empty()) client.set_ca_cert_path(options_.ca_file);
    client.set_follow_location(false);
    client.set_tcp_nodelay(true);
    auto set = [](int ms, auto&& setter) { setter(ms / 1000, (ms % 1000) * 1000); };
    set(options_.connect_timeout_ms,
        [&](time_t s, time_t us) { client.set_connection_timeout(s, us); });
    set(request.timeout_ms, [&](time_t s, time_t us) { client.set_read_timeout(s, us); });
    set(request.timeout_ms, [&](time_t s, time_t us) { client.set_write_timeout(s, us); });
    httplib::Headers headers;
    std::string content_type = "application/json";
    for (const auto& [k, v] : request.headers) {
      if (AsciiLower(k) == "content-type") {
        content_type = v;
      } else {
        headers.emplace(k, v);
      }
    }
    std::string target = url.path.empty() ? "/" : url.path;
    httplib::Result res = request.method == "POST"
                              ? client.Post(target, headers, request.body, content_type)
                              : client.Get(target, headers);
    if (!res) {
      // cpp-httplib says "Connection" for a refused connection and an unreachable host alike;
      // neither is a timeout, and the admin's next step differs (is the URL right?).
      const std::string why = res.error() == httplib::Error::Connection
                                  ? "cannot connect: connection refused or host unreachable "
                                    "(check the URL and that the API is up)"
                              : res.error() == httplib::Error::Read
                                  ? "no complete answer (timed out after " +
                                        std::to_string(request.timeout_ms) +
                                        " ms, or the connection was closed)"
                                  : "no answer (" + httplib::to_string(res.error()) + ")";
      return Error::Transient(Describe(request) + ": " + why);
    }
    HttpResponse out;
    out.status = res->status;
    out.body = res->body;
    for (const auto& [k, v] : res->headers) out.headers.emplace_back(k, v);
    return out;
  }

 private:
  HttpFetcherOptions options_;
};

class RecordedFetcher final : public Fetcher {
 public:
  RecordedFetcher(std::string recorded, int status)
      : recorded_(std::move(recorded)), status_(status) {}

  Result<HttpResponse> Fetch(const std::string& name, const HttpRequest& /*request*/) override {
    HttpResponse out;
    out.status = status_;
    if (name == "oauth2_token") {
      out.status = 200;
      out.body = R"({"access_token":"recorded","token_type":"Bearer","expires_in":3600})";
      return out;
    }
    if (name.empty()) {
      out.body = recorded_;
      return out;
    }
    rapidjson::Document doc;
    std::string error;
    if (!internal::ParseJson(recorded_, &doc, &error) || !doc.IsObject()) {
      return Error::Invalid(
          "the recorded response must be a JSON object with one member per "
          "request of the profile ('" +
          name + "' is needed)");
    }
    auto it = doc.FindMember(name.c_str());
    if (it == doc.MemberEnd()) {
      out.status = 404;
      out.body = "{}";
      return out;
    }
    out.body = internal::Compact(it->value);
    return out;
  }
  bool live() const override { return false; }

 private:
  std::string recorded_;
  int status_;
};

}  // namespace

std::unique_ptr<Fetcher> NewHttpFetcher(HttpFetcherOptions options) {
  return std::make_unique<HttplibFetcher>(std::move(options));
}

std::unique_ptr<Fetcher> NewRecordedFetcher(std::string recorded, int status) {
  return std::make_unique<RecordedFetcher>(std::move(recorded), status);
}

}  // namespace scimsync::connectors
