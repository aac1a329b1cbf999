// The Redis client against a real redis-server: reply mapping, errors, pipelining, scripts after
// a cache flush, unix sockets, AUTH, timeouts and reconnecting after a restart.
#include "scimsync/redis/client.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "redis_options.h"
#include "test_support.h"

namespace scimsync::redis {
namespace {

using scimsync::testing::RedisOptionsFor;
using scimsync::testing::RedisServer;

int64_t ElapsedMs(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               start)
      .count();
}

class RedisClientTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.Start()); }
  RedisServer server_;
};

TEST_F(RedisClientTest, MapsReplyTypes) {
  Connection c(RedisOptionsFor(server_.url()), "");
  auto set = c.Command({"SET", "k", "v"});
  ASSERT_TRUE(set.ok()) << set.error().message;
  EXPECT_EQ(set->type(), Reply::Type::kStatus);
  EXPECT_EQ(set->AsString(), "OK");

  auto missing = c.Command({"GET", "nope"});
  ASSERT_TRUE(missing.ok());
  EXPECT_TRUE(missing->is_nil());
  EXPECT_FALSE(missing->AsString().has_value());
  EXPECT_FALSE(missing->AsInteger().has_value());

  auto incr = c.Command({"INCRBY", "n", "41"});
  ASSERT_TRUE(incr.ok());
  EXPECT_EQ(incr->type(), Reply::Type::kInteger);
  EXPECT_EQ(incr->AsInteger(), 41);
  auto n = c.Command({"GET", "n"});
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n->AsInteger(), 41);  // a counter read back as a string still parses

  ASSERT_TRUE(c.Command({"RPUSH", "l", "a", "b"}).ok());
  auto range = c.Command({"LRANGE", "l", "0", "-1"});
  ASSERT_TRUE(range.ok());
  ASSERT_TRUE(range->is_array());
  ASSERT_EQ(range->elements().size(), 2u);
  EXPECT_EQ(range->elements()[1].AsString(), "b");
}

TEST_F(RedisClientTest, ErrorReplyIsPermanentWithRedisMessage) {
  Connection c(RedisOptionsFor(server_.url()), "");
  ASSERT_TRUE(c.Command({"RPUSH", "l", "a"}).ok());
  auto r = c.Command({"GET", "l"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kPermanent);
  EXPECT_NE(r.error().message.find("WRONGTYPE"), std::string::npos) << r.error().message;
  // The connection is still usable after an error reply.
  EXPECT_TRUE(c.Command({"PING"}).ok());
}

TEST(RedisErrorFromReply, ClassifiesNotNowAndAuth) {
  EXPECT_EQ(ErrorFromReply("LOADING Redis is loading the dataset in memory").kind,
            ErrorKind::kTransient);
  EXPECT_EQ(ErrorFromReply("OOM command not allowed when used memory > 'maxmemory'.").kind,
            ErrorKind::kTransient);
  EXPECT_EQ(ErrorFromReply("READONLY You can't write against a read only replica.").kind,
            ErrorKind::kTransient);
  EXPECT_EQ(ErrorFromReply("NOAUTH Authentication required.").kind, ErrorKind::kAuth);
  EXPECT_EQ(ErrorFromReply("ERR unknown command 'FOO'").kind, ErrorKind::kPermanent);
  EXPECT_EQ(ErrorFromReply("BUSY Redis is busy running a script.").kind, ErrorKind::kTransient);
  // A code that merely starts like a transient one is not one.
  EXPECT_EQ(ErrorFromReply("BUSYGROUP Consumer Group name already exists").kind,
            ErrorKind::kPermanent);
}

TEST_F(RedisClientTest, BinarySafeValues) {
  Connection c(RedisOptionsFor(server_.url()), "");
  using namespace std::string_literals;
  const std::string key = "k\0ey"s;
  const std::string value = "a\0b\r\n$3\r\nc"s;
  ASSERT_EQ(value.size(), 10u);
  ASSERT_TRUE(c.Command({"SET", key, value}).ok());
  auto r = c.Command({"GET", key});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->AsString(), value);
}

TEST_F(RedisClientTest, PipelineKeepsEachCommandsOutcome) {
  Connection c(RedisOptionsFor(server_.url()), "");
  auto r = c.Commands({{"SET", "a", "1"}, {"INCR", "a"}, {"LPUSH", "a", "x"}, {"GET", "a"}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->size(), 4u);
  EXPECT_TRUE((*r)[0].ok());
  EXPECT_EQ((*r)[1]->AsInteger(), 2);
  ASSERT_FALSE((*r)[2].ok());
  EXPECT_NE((*r)[2].error().message.find("WRONGTYPE"), std::string::npos);
  EXPECT_EQ((*r)[3]->AsString(), "2");
}

TEST_F(RedisClientTest, ScriptSurvivesScriptCacheFlush) {
  Connection c(RedisOptionsFor(server_.url()), "");
  Script script("return KEYS[1] .. ':' .. ARGV[1]");
  EXPECT_EQ(script.sha1().size(), 40u);
  auto first = c.Eval(script, {"k"}, {"v"});
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_EQ(first->AsString(), "k:v");
  // Redis hashes the same source to the same SHA-1: EVAL cached it under ours.
  EXPECT_EQ(server_.Cli({"SCRIPT", "EXISTS", script.sha1()}), "1");

  ASSERT_EQ(server_.Cli({"SCRIPT", "FLUSH"}), "OK");
  auto second = c.Eval(script, {"k2"}, {"v2"});
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_EQ(second->AsString(), "k2:v2");
  EXPECT_EQ(server_.Cli({"SCRIPT", "EXISTS", script.sha1()}), "1");
}

TEST_F(RedisClientTest, ScriptErrorIsPermanent) {
  Connection c(RedisOptionsFor(server_.url()), "");
  Script script("return redis.error_reply('BAD thing')");
  auto r = c.Eval(script, {}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kPermanent);
  EXPECT_NE(r.error().message.find("BAD thing"), std::string::npos);
}

TEST_F(RedisClientTest, UnixSocketAndDatabaseNumber) {
  Connection c(RedisOptionsFor(server_.unix_url() + "?db=3"), "");
  EXPECT_EQ(c.endpoint(), "unix:" + server_.socket_path());
  ASSERT_TRUE(c.Command({"SET", "where", "db3"}).ok());
  EXPECT_EQ(server_.Cli({"-n", "3", "GET", "where"}), "db3");
  EXPECT_EQ(server_.Cli({"-n", "0", "EXISTS", "where"}), "0");

  Connection tcp(RedisOptionsFor(server_.url().substr(0, server_.url().size() - 1) + "5"), "");
  ASSERT_TRUE(tcp.Command({"SET", "where", "db5"}).ok());
  EXPECT_EQ(server_.Cli({"-n", "5", "GET", "where"}), "db5");
}

TEST_F(RedisClientTest, StopFailsFastAndFirstCallAfterRestartSucceeds) {
  config::RedisOptions options = RedisOptionsFor(server_.url());
  Connection c(options, "");
  ASSERT_TRUE(c.Command({"SET", "k", "before"}).ok());
  ASSERT_TRUE(c.connected());

  server_.Stop();
  auto start = std::chrono::steady_clock::now();
  auto down = c.Command({"GET", "k"});
  ASSERT_FALSE(down.ok());
  EXPECT_EQ(down.error().kind, ErrorKind::kTransient);
  EXPECT_NE(down.error().message.find("127.0.0.1:" + std::to_string(server_.port())),
            std::string::npos)
      << down.error().message;
  EXPECT_FALSE(c.Command({"PING"}).ok());
  EXPECT_LT(ElapsedMs(start), options.connect_timeout_ms + 1000);

  ASSERT_TRUE(server_.Start());
  auto up = c.Command({"GET", "k"});
  ASSERT_TRUE(up.ok()) << up.error().message;
  EXPECT_EQ(up->AsString(), "before");  // AOF: nothing acknowledged was lost
}

TEST_F(RedisClientTest, IdleConnectionSurvivesRestart) {
  Connection c(RedisOptionsFor(server_.url()), "");
  ASSERT_TRUE(c.Command({"PING"}).ok());
  server_.Stop();
  ASSERT_TRUE(server_.Start());
  // The socket the server closed is noticed before sending: no failed call after the restart.
  auto r = c.Command({"PING"});
  EXPECT_TRUE(r.ok()) << r.error().message;
}

TEST_F(RedisClientTest, CommandTimeoutIsTransientAndConnectionRecovers) {
  config::RedisOptions options = RedisOptionsFor(server_.url());
  options.command_timeout_ms = 300;
  Connection c(options, "");
  auto start = std::chrono::steady_clock::now();
  auto r = c.Command({"BLPOP", "empty-list", "3"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kTransient);
  EXPECT_NE(r.error().message.find("command_timeout_ms"), std::string::npos) << r.error().message;
  EXPECT_LT(ElapsedMs(start), 2500);
  auto ping = c.Command({"PING"});
  EXPECT_TRUE(ping.ok()) << ping.error().message;
}

TEST(RedisClientUnreachable, ConnectFailsWithinConnectTimeout) {
  config::RedisOptions options = RedisOptionsFor("redis://127.0.0.1:1/0");
  options.connect_timeout_ms = 300;
  Connection c(options, "");
  auto start = std::chrono::steady_clock::now();
  Status s = c.Connect();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().kind, ErrorKind::kTransient);
  EXPECT_NE(s.error().message.find("redis.url"), std::string::npos) << s.error().message;
  EXPECT_LT(ElapsedMs(start), 1500);
}

TEST(RedisClientPool, ThreadsShareAPool) {
  RedisServer server;
  ASSERT_TRUE(server.Start());
  Pool pool(RedisOptionsFor(server.url()), "", 4);
  std::vector<std::thread> threads;
  threads.reserve(8);
  std::atomic<int> failures{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        if (!pool.Acquire()->Command({"INCR", "counter"}).ok()) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(server.Cli({"GET", "counter"}), "1600");
}

class RedisAuthTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.Start()); }
  RedisServer server_{"s3cret-pw"};
};

TEST_F(RedisAuthTest, NoPasswordIsAnAuthError) {
  Connection c(RedisOptionsFor(server_.url()), "");
  auto r = c.Command({"GET", "k"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kAuth);
  EXPECT_NE(r.error().message.find("password"), std::string::npos) << r.error().message;
}

TEST_F(RedisAuthTest, WrongPasswordIsAnAuthErrorWithoutTheSecret) {
  Connection c(RedisOptionsFor(server_.url()), "wrong-pw-value");
  Status s = c.Connect();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().kind, ErrorKind::kAuth);
  EXPECT_EQ(s.error().message.find("wrong-pw-value"), std::string::npos) << s.error().message;
  EXPECT_FALSE(c.connected());
}

TEST_F(RedisAuthTest, ResolvedPasswordAndUrlCredentialsWork) {
  Connection resolved(RedisOptionsFor(server_.url()), server_.password());
  EXPECT_TRUE(resolved.Command({"SET", "k", "v"}).ok());

  std::string port = std::to_string(server_.port());
  Connection url_password(RedisOptionsFor("redis://:s3cret-pw@127.0.0.1:" + port + "/0"), "");
  auto r = url_password.Command({"GET", "k"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->AsString(), "v");

  Connection acl_user(RedisOptionsFor("redis://default:s3cret-pw@127.0.0.1:" + port + "/0"), "");
  EXPECT_TRUE(acl_user.Command({"PING"}).ok());

  Connection unix_socket(RedisOptionsFor(server_.unix_url()), server_.password());
  EXPECT_TRUE(unix_socket.Command({"PING"}).ok());
}

}  // namespace
}  // namespace scimsync::redis
