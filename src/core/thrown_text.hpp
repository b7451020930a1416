// What the exception being handled says, for code that catches what an application's callback
// threw and reports it as a failure. Private to the library.
#pragma once

#include <exception>
#include <string>

namespace outbox::detail {

/// Call inside a catch: the exception's what(), else a placeholder.
inline std::string thrown_text() {
    try {
        throw;
    } catch (const std::exception& e) {
        return e.what();
    } catch (...) {
        return "an exception not derived from std::exception";
    }
}

}  // namespace outbox::detail
