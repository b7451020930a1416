// Logging: a level and a sink function, silent by default. Secrets never reach it.
#pragma once

#include <functional>
#include <string_view>

namespace outbox {

enum class LogLevel { debug = 0, info = 1, warning = 2, error = 3, off = 4 };

std::string_view to_string(LogLevel level) noexcept;

/// Lines go to `sink` from the library's threads (see docs/observability.md). An exception the
/// sink throws is swallowed: a line that could not be written must not cost a message its
/// completion, nor unwind through librdkafka's C frames (which ends the process).
struct Logger {
    LogLevel level = LogLevel::off;
    std::function<void(LogLevel, std::string_view)> sink{};

    bool enabled(LogLevel l) const noexcept { return sink && l >= level && level != LogLevel::off; }
    void log(LogLevel l, std::string_view message) const noexcept {
        if (!enabled(l)) return;
        try {
            sink(l, message);
        } catch (...) {  // nowhere left to say so
        }
    }
};

/// A logger that writes "outbox <level>: <message>" lines to standard error.
Logger stderr_logger(LogLevel level);

}  // namespace outbox
