#include "daemon_fixture.h"

#include <openssl/hmac.h>

#include <cstdio>

namespace scimsync::testing {

std::string HmacSha256Hex(const std::string& key, const std::string& data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  std::string hex;
  char buf[3];
  for (unsigned int i = 0; i < len; ++i) {
    std::snprintf(buf, sizeof buf, "%02x", out[i]);
    hex += buf;
  }
  return hex;
}

std::string GenericEvent(const std::string& event_id, const std::string& employee_id,
                         const std::string& type) {
  return R"({"id":")" + event_id + R"(","type":")" + type +
         R"(","occurred_at":"2026-11-28T10:00:00Z","employee":{"id":")" + employee_id +
         R"(","firstName":"Ada","lastName":"Lovelace","workEmail":"ada.)" + employee_id +
         R"(@example.com"}})";
}

DaemonFixture::DaemonFixture(std::string extra_yaml) : extra_yaml_(std::move(extra_yaml)) {
  redis_options_.host = "127.0.0.1";
  redis_options_.port = redis_.port();
  redis_options_.url = redis_.url();
  redis_options_.connect_timeout_ms = 500;
  redis_options_.command_timeout_ms = 3000;
}

DaemonFixture::~DaemonFixture() { StopDaemon(); }

std::string DaemonFixture::Binary() const {
  return std::string(SCIMSYNC_BINARY_DIR) + "/daemon/scimsyncd";
}

bool DaemonFixture::StartDaemon() {
  std::string yaml =
      "listen: {address: 127.0.0.1, port: 0, max_body_bytes: 65536}\n"
      "redis: {url: \"" +
      redis_.url() +
      "\", connect_timeout_ms: 300}\n"
      "target: {dry_run: true, dry_run_file: " +
      dir_.File("dry-run.jsonl") + "}\n" +
      (extra_yaml_.find("workers:") == std::string::npos ? "workers: {threads: 0}\n" : "") +
      "profiles:\n"
      "  - {name: hr, connector: generic, secret_env: TEST_HR_SECRET}\n" +
      extra_yaml_;
  WriteFile(config_path(), yaml);
  return Launch({Binary(), "--config", config_path()});
}

bool DaemonFixture::Launch(const std::vector<std::string>& argv, std::vector<std::string> env) {
  env.push_back(std::string("TEST_HR_SECRET=") + kWebhookSecret);
  port_ = StartScimsyncd(daemon_, argv, dir_.File("daemon.log"), env, 15000);
  return port_ != 0;
}

void DaemonFixture::StopDaemon() {
  if (!daemon_.running()) return;
  daemon_.Signal(SIGTERM);
  if (daemon_.Wait(10000) < 0) daemon_.Kill();
}

std::unique_ptr<httplib::Client> DaemonFixture::Client() const {
  auto c = std::make_unique<httplib::Client>("127.0.0.1", port_);
  c->set_connection_timeout(5, 0);
  c->set_read_timeout(10, 0);
  c->set_tcp_nodelay(true);
  return c;
}

httplib::Result DaemonFixture::PostSigned(httplib::Client& client, const std::string& body,
                                          const std::string& path) const {
  httplib::Headers headers = {
      {"X-Scimsync-Signature", "sha256=" + HmacSha256Hex(kWebhookSecret, body)}};
  return client.Post(path.c_str(), headers, body, "application/json");
}

std::unique_ptr<queue::Queue> DaemonFixture::Queue() const {
  return queue::NewRedisQueue(redis_options_, "");
}

int64_t DaemonFixture::TotalDepth() const {
  auto q = Queue();
  int64_t total = 0;
  for (int p = 0; p < redis_options_.partitions; ++p) {
    auto d = q->Depth(p);
    if (!d.ok()) return -1;
    total += *d;
  }
  return total;
}

std::vector<queue::Item> DaemonFixture::ReadAll() const {
  auto q = Queue();
  std::vector<queue::Item> out;
  for (int p = 0; p < redis_options_.partitions; ++p) {
    while (true) {
      auto items = q->Read(p, "test-reader", 500, 0);
      if (!items.ok() || items->empty()) break;
      out.insert(out.end(), items->begin(), items->end());
    }
  }
  return out;
}

}  // namespace scimsync::testing
