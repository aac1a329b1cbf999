#include "scimsync/daemon/http_server.h"

#include <httplib.h>

#include <cerrno>
#include <cstring>

#include "scimsync/daemon/metrics.h"
#include "scimsync/log.h"

namespace scimsync::daemon {

class HttpServer::Impl {
 public:
  std::unique_ptr<httplib::Server> server;
};

namespace {

void SetJson(httplib::Response& res, int status, const std::string& body) {
  res.status = status;
  res.set_content(body, "application/json");
}

connectors::RequestLimits Limits(const config::ListenOptions& o) {
  connectors::RequestLimits l;
  l.max_headers = o.max_headers;
  l.max_header_bytes = o.max_header_bytes;
  l.max_json_depth = o.max_json_depth;
  l.max_items = o.max_items;
  l.max_field_bytes = o.max_field_bytes;
  l.max_id_bytes = o.max_id_bytes;
  return l;
}

connectors::Request ToRequest(const httplib::Request& req, std::string tenant,
                              const connectors::RequestLimits& limits) {
  connectors::Request out;
  out.limits = limits;
  out.method = req.method;
  out.content_type = req.get_header_value("Content-Type");
  out.headers.reserve(req.headers.size());
  for (const auto& [name, value] : req.headers) out.headers.emplace_back(name, value);
  out.body = req.body;
  out.tenant = std::move(tenant);
  return out;
}

}  // namespace

HttpServer::HttpServer(const config::ListenOptions& options, HttpHandlers handlers)
    : impl_(std::make_unique<Impl>()), options_(options) {
  if (!options.tls_cert_file.empty()) {
    impl_->server = std::make_unique<httplib::SSLServer>(options.tls_cert_file.c_str(),
                                                         options.tls_key_file.c_str());
  } else {
    impl_->server = std::make_unique<httplib::Server>();
  }
  httplib::Server& svr = *impl_->server;

  // Without TCP_NODELAY, Nagle plus the client's delayed ACK cap a keep-alive client near 25
  // requests/s per connection (measured; DESIGN.md).
  svr.set_tcp_nodelay(true);
  const size_t threads = static_cast<size_t>(options.threads);
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  svr.set_keep_alive_timeout(options.keep_alive_timeout_s);
  svr.set_keep_alive_max_count(static_cast<size_t>(options.keep_alive_max_requests));
  svr.set_read_timeout(10, 0);
  svr.set_write_timeout(10, 0);
  svr.set_payload_max_length(static_cast<size_t>(options.max_body_bytes));

  Ingest* ingest = handlers.ingest;
  // The body is read here, not by cpp-httplib: its own limit (set_payload_max_length) covers a
  // declared Content-Length but not a chunked body, which it would read to any size.
  auto webhook = [ingest, limits = Limits(options), max_body = options.max_body_bytes](
                     const httplib::Request& req, httplib::Response& res,
                     const httplib::ContentReader& read) {
    if (req.is_multipart_form_data()) {
      SetJson(res, 415,
              ErrorBody("unsupported_media_type",
                        "multipart bodies are not accepted: send the webhook as JSON or "
                        "application/x-www-form-urlencoded"));
      res.set_header("Connection", "close");
      return;
    }
    std::string body;
    bool too_large = false;
    const bool complete = read([&](const char* data, size_t n) {
      if (static_cast<int64_t>(body.size() + n) > max_body) {
        too_large = true;
        return false;
      }
      body.append(data, n);
      return true;
    });
    // A declared Content-Length over the limit fails the read with 413 before any byte is read.
    if (too_large || res.status == 413) {
      SetJson(res, 413,
              ErrorBody("payload_too_large", "the body is larger than listen.max_body_bytes (" +
                                                 std::to_string(max_body) + " bytes)"));
      // The rest of the body is still on the wire: the connection cannot be reused.
      res.set_header("Connection", "close");
      log::Warn("webhook", {{"path", req.path}, {"status", 413}, {"detail", "body too large"}});
      return;
    }
    if (!complete) {
      SetJson(res, 400, ErrorBody("bad_request", "the request body could not be read completely"));
      res.set_header("Connection", "close");
      return;
    }
    std::string profile = req.matches[1];
    std::string tenant = req.matches.size() > 3 ? std::string(req.matches[3]) : std::string();
    connectors::Request request = ToRequest(req, std::move(tenant), limits);
    request.body = std::move(body);
    WebhookResponse r = ingest->Handle(profile, request);
    for (const auto& [k, v] : r.headers) res.set_header(k, v);
    SetJson(res, r.status, r.body);
  };
  const char* kWebhookPath = R"(/webhooks/([^/]+)(/([^/]+))?/?)";
  svr.Post(kWebhookPath, webhook);
  // cpp-httplib routes a POST without a body (no Content-Length, no chunks) to the plain
  // handlers only: it gets the same treatment, with an empty body.
  svr.Post(kWebhookPath, [webhook](const httplib::Request& req, httplib::Response& res) {
    webhook(req, res,
            httplib::ContentReader(
                [](httplib::ContentReceiver) { return true; },
                [](httplib::MultipartContentHeader, httplib::ContentReceiver) { return true; }));
  });
  auto not_allowed = [](const httplib::Request& req, httplib::Response& res) {
    res.set_header("Allow", "POST");
    SetJson(
        res, 405,
        ErrorBody("method_not_allowed", req.method + " is not accepted here: webhooks are POSTed"));
  };
  svr.Get(kWebhookPath, not_allowed);
  svr.Put(kWebhookPath, not_allowed);
  svr.Patch(kWebhookPath, not_allowed);
  svr.Delete(kWebhookPath, not_allowed);

  svr.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    SetJson(res, 200, "{\"status\":\"alive\"}");
  });
  svr.Get("/metrics", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(Metrics::Global().Render(), kMetricsContentType);
  });
  auto not_ready = handlers.not_ready_reason;
  svr.Get("/readyz", [not_ready](const httplib::Request&, httplib::Response& res) {
    std::string reason = not_ready ? not_ready() : std::string();
    if (reason.empty()) {
      SetJson(res, 200, "{\"status\":\"ready\"}");
    } else {
      SetJson(res, 503, ErrorBody("not_ready", reason));
    }
  });

  // Statuses cpp-httplib produces itself (404 no route, 413 too large, 400 bad request line)
  // arrive here with an empty body; give them the same JSON shape as ours.
  httplib::Server::HandlerWithResponse on_error = [max = options.max_body_bytes](
                                                      const httplib::Request& req,
                                                      httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    switch (res.status) {
      case 404:
        SetJson(res, 404,
                ErrorBody("not_found",
                          "no such path: webhooks go to POST "
                          "/webhooks/{profile}[/{tenant}]"));
        break;
      case 413:
        SetJson(res, 413,
                ErrorBody("payload_too_large", "the body is larger than listen.max_body_bytes (" +
                                                   std::to_string(max) + " bytes)"));
        log::Warn("webhook", {{"path", req.path}, {"status", 413}, {"detail", "body too large"}});
        break;
      default:
        SetJson(res, res.status, ErrorBody("bad_request", "the HTTP request could not be read"));
    }
    return httplib::Server::HandlerResponse::Handled;
  };
  svr.set_error_handler(std::move(on_error));
}

HttpServer::~HttpServer() { Stop(); }

Status HttpServer::Bind() {
  errno = 0;
  if (!impl_->server->is_valid()) {
    return Error::Invalid(
        "cannot load listen.tls_cert_file / listen.tls_key_file: check both "
        "paths and that the key matches the certificate");
  }
  if (!impl_->server->bind_to_port(options_.address.c_str(), options_.port)) {
    int err = errno;
    return Error::Invalid("cannot listen on " + options_.address + ":" +
                          std::to_string(options_.port) + ": " +
                          (err != 0 ? std::strerror(err) : "address in use or not available") +
                          " (listen.address / listen.port)");
  }
  port_ = options_.port;
  return {};
}

void HttpServer::Serve() { impl_->server->listen_after_bind(); }

void HttpServer::Stop() {
  if (impl_ && impl_->server) impl_->server->stop();
}

}  // namespace scimsync::daemon
