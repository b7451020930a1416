#include <outbox/credentials.hpp>

#include "catch.hpp"

#include <sstream>

TEST_CASE("printing credentials never shows the secret or the token") {
    const outbox::Credentials c{
        "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "SESSIONTOKENVALUE", {}};
    std::ostringstream os;
    os << c;
    const std::string text = os.str();
    CHECK(text.find("AKIDEXAMPLE") != std::string::npos);
    CHECK(text.find("wJalrXUtnFEMI") == std::string::npos);
    CHECK(text.find("SESSIONTOKENVALUE") == std::string::npos);
    CHECK(text.find("<redacted>") != std::string::npos);
    CHECK(c.has_session_token());
    CHECK_FALSE(c.empty());
    CHECK(outbox::Credentials{}.empty());
}
