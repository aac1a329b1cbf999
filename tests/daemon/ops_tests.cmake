# Operations pieces of the daemon: the sd_notify wrapper and watchdog pinger (against a real unix
# datagram socket from tests/support/notify_socket.h) and the Prometheus metrics.
scimsync_add_test(daemon_notify_test LABEL unit SOURCES notify_test.cc LIBS scimsync_daemon)
scimsync_add_test(daemon_metrics_test LABEL unit SOURCES metrics_test.cc LIBS scimsync_daemon)
