// A token bucket as a value apart from I/O: told the time, it says whether one more message
// may go now. Private to the library; RoutingDestination holds one per target.
#pragma once

#include <algorithm>
#include <chrono>

namespace outbox::detail {

class TokenBucket {
  public:
    using time_point = std::chrono::steady_clock::time_point;

    /// `per_second` tokens come back each second, up to `burst` (at least 1) held at once;
    /// the bucket starts full.
    TokenBucket(double per_second, double burst, time_point now)
        : rate_(per_second), burst_(std::max(1.0, burst)), tokens_(burst_), last_(now) {}

    /// Takes a token when one is there.
    bool take(time_point now) {
        if (now > last_) {
            const double seconds = std::chrono::duration<double>(now - last_).count();
            tokens_ = std::min(burst_, tokens_ + seconds * rate_);
            last_ = now;
        }
        if (tokens_ < 1.0) return false;
        tokens_ -= 1.0;
        return true;
    }

  private:
    double rate_, burst_, tokens_;
    time_point last_;
};

}  // namespace outbox::detail
