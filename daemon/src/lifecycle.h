// Components started in dependency order and stopped in reverse (userver's component idea, kept
// small). A component is a name and a start/stop pair over objects the caller owns; the list is
// the one place that says what runs before what, so a newcomer reads the daemon's order here and
// in Daemon's AddComponents, not in a 300-line function.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "scimsync/result.h"

namespace scimsync::daemon {

class Lifecycle {
 public:
  Lifecycle() = default;
  ~Lifecycle();  // StopAll(): nothing is left running when the owner unwinds
  Lifecycle(const Lifecycle&) = delete;
  Lifecycle& operator=(const Lifecycle&) = delete;

  // Appends a component: it starts after every component added before it and stops before
  // them. `start` may fail (an error that says what to fix: "cannot listen on ..."); `stop` must
  // not, and may be empty for a component that only checks something at start.
  void Add(std::string name, std::function<Status()> start, std::function<void()> stop = {});

  // Starts the components in the order added. When component k fails, components k-1 .. 1 are
  // stopped in that order, the rest are never started, and k's error is returned unchanged (its
  // message already names the setting; the daemon logs it as "cannot start").
  Status StartAll();
  // Stops the started components in reverse order, each once; later calls do nothing.
  void StopAll();

  // Names of the components running now, in start order.
  std::vector<std::string> running() const;

 private:
  struct Component {
    std::string name;
    std::function<Status()> start;
    std::function<void()> stop;
  };
  std::vector<Component> components_;
  size_t started_ = 0;  // components_[0, started_) are running
};

}  // namespace scimsync::daemon
