#include "lifecycle.h"

#include <utility>

namespace scimsync::daemon {

Lifecycle::~Lifecycle() { StopAll(); }

void Lifecycle::Add(std::string name, std::function<Status()> start, std::function<void()> stop) {
  components_.push_back({std::move(name), std::move(start), std::move(stop)});
}

Status Lifecycle::StartAll() {
  while (started_ < components_.size()) {
    Component& c = components_[started_];
    Status s = c.start ? c.start() : Status();
    if (!s.ok()) {
      StopAll();
      return s;
    }
    ++started_;
  }
  return {};
}

void Lifecycle::StopAll() {
  while (started_ > 0) {
    Component& c = components_[--started_];
    if (c.stop) c.stop();
  }
}

std::vector<std::string> Lifecycle::running() const {
  std::vector<std::string> names;
  for (size_t i = 0; i < started_; ++i) names.push_back(components_[i].name);
  return names;
}

}  // namespace scimsync::daemon
