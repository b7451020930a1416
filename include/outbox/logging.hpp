// Logging: a level and a sink function, silent by default. Secrets never reach it.
#pragma once

#include <functional>
#include <string_view>

namespace outbox {

enum class LogLevel { debug = 0, info = 1, warning = 2, error = 3, off = 4 };

std::string_view to_string(LogLevel level) noexcept;

struct Logger {
    LogLevel level = LogLevel::off;
    std::function<void(LogLevel, std::string_view)> sink{};

    bool enabled(LogLevel l) const noexcept { return sink && l >= level && level != LogLevel::off; }
    void log(LogLevel l, std::string_view message) const {
        if (enabled(l)) sink(l, message);
    }
};

/// A logger that writes "outbox <level>: <message>" lines to standard error.
Logger stderr_logger(LogLevel level);

}  // namespace outbox
