// The ingest ceiling: cpp-httplib answering every POST with 202 and a small JSON body, configured
// like scimsyncd's listener (TCP_NODELAY, thread pool, keep-alive limits) but with no signature
// check, no parsing and no Redis. scimsyncd's ingest rate divided by this one is how much of the
// HTTP layer's capacity the real work costs.
//
//   scimsync_bench_bare PORT [THREADS] [KEEP_ALIVE_MAX_REQUESTS]
// PORT 0: the kernel picks one; "listening on 127.0.0.1:PORT" on stdout says which.
#include <httplib.h>

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <string>

namespace {
httplib::Server* g_server = nullptr;
void OnSignal(int) {
  if (g_server != nullptr) g_server->stop();
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: scimsync_bench_bare PORT [THREADS] [KEEP_ALIVE_MAX_REQUESTS]\n";
    return 2;
  }
  int port = std::atoi(argv[1]);
  int threads = argc > 2 ? std::atoi(argv[2]) : 16;
  int keep_alive_max = argc > 3 ? std::atoi(argv[3]) : 100;
  httplib::Server svr;
  svr.set_tcp_nodelay(true);
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  svr.set_keep_alive_timeout(2);
  svr.set_keep_alive_max_count(static_cast<size_t>(keep_alive_max));
  svr.Post(R"(/webhooks/([^/]+))", [](const httplib::Request&, httplib::Response& res) {
    res.status = 202;
    res.set_content(R"({"accepted":1,"duplicates":0})", "application/json");
  });
  g_server = &svr;
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  const int bound = port == 0 ? svr.bind_to_any_port("127.0.0.1")
                              : (svr.bind_to_port("127.0.0.1", port) ? port : -1);
  if (bound <= 0) {
    std::cerr << "scimsync_bench_bare: cannot listen on 127.0.0.1:" << port << "\n";
    return 1;
  }
  std::cout << "listening on 127.0.0.1:" << bound << std::endl;
  return svr.listen_after_bind() ? 0 : 1;
}
