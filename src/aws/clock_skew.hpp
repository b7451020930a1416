// The offset between the local clock and a service's, learnt from the Date header of a reply
// that refused a request as signed at the wrong time. Signing adds it to the local clock.
// Not thread-safe: each owner keeps it on its strand. Private to the library.
#pragma once

#include "http/http_date.hpp"

#include <chrono>
#include <string_view>

namespace outbox::detail {

class ClockSkew {
  public:
    /// The time to sign with.
    std::chrono::system_clock::time_point now() const {
        return std::chrono::system_clock::now() + offset_;
    }
    std::chrono::system_clock::duration offset() const { return offset_; }

    /// Adopts the server's time from `date_header`. False when it is unreadable or agrees
    /// with the offset already in use (within 2 s): retrying would change nothing.
    bool correct(std::string_view date_header) {
        const auto server = parse_http_date(date_header);
        if (!server) return false;
        const auto offset = *server - std::chrono::system_clock::now();
        if (std::chrono::abs(offset - offset_) < std::chrono::seconds(2)) return false;
        offset_ = offset;
        return true;
    }

  private:
    std::chrono::system_clock::duration offset_{0};
};

}  // namespace outbox::detail
