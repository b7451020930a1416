#include <outbox/logging.hpp>

#include <cstdio>
#include <string>

namespace outbox {

std::string_view to_string(LogLevel level) noexcept {
    switch (level) {
        case LogLevel::debug:
            return "debug";
        case LogLevel::info:
            return "info";
        case LogLevel::warning:
            return "warning";
        case LogLevel::error:
            return "error";
        case LogLevel::off:
            return "off";
    }
    return "unknown";
}

Logger stderr_logger(LogLevel level) {
    return Logger{level, [](LogLevel l, std::string_view message) {
                      std::string line = "outbox ";
                      line += to_string(l);
                      line += ": ";
                      line += message;
                      line += '\n';
                      std::fwrite(line.data(), 1, line.size(), stderr);
                  }};
}

}  // namespace outbox
