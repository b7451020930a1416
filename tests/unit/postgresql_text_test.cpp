// The PostgreSQL store's text handling without a server: passwords hidden, what it refuses,
// the attributes column read back, array literals.
#include "catch.hpp"

#include "outbox/postgresql_text.hpp"

#include <algorithm>

using namespace outbox::detail;

TEST_CASE("a password is hidden wherever a connection string holds one") {
    CHECK(redact_connection_string("postgresql://relay:s3cret@db:5432/app") ==
          "postgresql://relay:***@db:5432/app");
    // libpq looks for the user part up to the first '/', so a '?' may be in the password.
    CHECK(redact_connection_string("postgresql://relay:pa?ss@db/app") ==
          "postgresql://relay:***@db/app");
    CHECK(redact_connection_string("postgresql://db/app?user=relay&password=s3cret&x=1") ==
          "postgresql://db/app?user=relay&password=***&x=1");
    CHECK(redact_connection_string("host=db password = 'it\\'s secret' dbname=app") ==
          "host=db password = *** dbname=app");
    CHECK(redact_connection_string("host=db password=a\\ b dbname=app") ==
          "host=db password=*** dbname=app");
    CHECK(redact_connection_string("postgresql://relay@db/app") == "postgresql://relay@db/app");
    // Found by fuzz_attributes_json once the library was instrumented: a keyword's unquoted
    // value that runs into a URI's password overlapped it, and the overlap kept the first.
    const std::string overlapping = redact_connection_string("password=hunter2://u:pw@db/@/");
    CHECK(overlapping.find("hunter2") == std::string::npos);
    CHECK(overlapping.find("pw") == std::string::npos);
    // The same in libpq's messages: secrets that overlap where they are quoted.
    const auto quoted_secrets = connection_secrets("postgresql://u:mypassword=abc@db/app");
    const std::string quoted =
        scrub_secrets("invalid URI \"postgresql://u:mypassword=abc@db/app\"", quoted_secrets);
    CHECK(quoted.find("mypassword") == std::string::npos);
    CHECK(quoted.find("abc") == std::string::npos);
    CHECK(scrub_secrets("aaaa", {"aa"}) == "***");
    // What libpq may quote in its own messages: the password as written and decoded.
    const auto secrets = connection_secrets("postgresql://relay:50%25off@db/app");
    CHECK(std::find(secrets.begin(), secrets.end(), "50%25off") != secrets.end());
    CHECK(std::find(secrets.begin(), secrets.end(), "50%off") != secrets.end());
}

TEST_CASE("a URI whose password holds an '@' or '/' not encoded is named, never shown") {
    CHECK(uri_user_part_problem("postgresql://relay:Xy/9k+a@db/app") ==
          "a '/' in the URI's user name or password must be written %2F");
    CHECK(uri_user_part_problem("postgresql://relay:p@ss@db:5432/app") ==
          "an '@' in the URI's user name or password must be written %40");
    CHECK(redact_user_part_loosely("postgresql://relay:Xy/9k+a@db/app") ==
          "postgresql://***@db/app");
    CHECK(redact_user_part_loosely("postgresql://relay:p@ss@db:5432/app") ==
          "postgresql://***@db:5432/app");
    // What libpq reads as meant: nothing to say.
    for (const char* fine :
         {"postgresql://relay:s3cret@db:5432/app", "postgresql://relay:Xy%2F9k%40a@db/app",
          "postgresql://relay:pa?ss@db/app", "postgresql://relay@db/app",
          "postgresql://db/app?user=relay&password=s3cret",
          "postgresql://db/app?application_name=a@b", "postgresql://db/x@y",
          "host=db password=a/b@c dbname=app"}) {
        INFO(fine);
        CHECK(uri_user_part_problem(fine).empty());
    }
}

TEST_CASE("what the PostgreSQL store refuses, and says why") {
    outbox::Message m;
    m.body = std::string("a body may hold \0 anything", 26);
    CHECK(postgresql_refusal("q", m).empty());
    m.group_id = "g\xff";
    CHECK(postgresql_refusal("q", m) ==
          "its group id holds bytes that are not UTF-8, which the PostgreSQL store cannot keep");
    m.group_id = "g";
    m.attributes = {{"bin", "Binary", std::string("\0\xff", 2)}};
    CHECK(postgresql_refusal("q", m).empty());  // stored in base64
    m.attributes = {{"k", "String", std::string("\0", 1)}};
    CHECK(postgresql_refusal("q", m) ==
          "attribute \"k\": its value holds a NUL byte, which the PostgreSQL store cannot keep");
    m.attributes.clear();
    m.delay = std::chrono::seconds(901);
    CHECK(postgresql_refusal("q", m) == "its delay is 901 s; the PostgreSQL store keeps 0 to 900");
    CHECK(postgresql_refusal(std::string("q\0", 2), outbox::Message{}) ==
          "its target holds a NUL byte, which the PostgreSQL store cannot keep");
}

TEST_CASE("attributes go into JSON and come back the same; malformed ones say what is wrong") {
    const std::vector<outbox::MessageAttribute> attributes = {
        {"kind", "String", "order \"42\""}, {"n", "Number", "7"}, {"raw", "Binary", "\0\xff\x01"}};
    std::string json;
    append_attributes_json(attributes, json);
    std::vector<outbox::MessageAttribute> back;
    std::string why;
    REQUIRE(parse_attributes_json(json, back, why));
    REQUIRE(back.size() == 3);
    for (const auto& a : attributes) {
        const auto it =
            std::find_if(back.begin(), back.end(), [&](const auto& b) { return b.name == a.name; });
        REQUIRE(it != back.end());
        CHECK(it->data_type == a.data_type);
        CHECK(it->value == a.value);
    }
    back.clear();
    CHECK_FALSE(parse_attributes_json(R"({"k": {"StringValue": "v"}})", back, why));
    CHECK(why == "attribute \"k\" has no DataType string");
    CHECK_FALSE(
        parse_attributes_json(R"({"b": {"DataType": "Binary", "BinaryValue": "!"}})", back, why));
    CHECK(why == "attribute \"b\" has no BinaryValue in base64");
    CHECK_FALSE(parse_attributes_json("[1]", back, why));
    CHECK(why == "not a JSON object of attributes");
}

TEST_CASE("array literal elements are quoted, escaped, and always valid text") {
    std::string out;
    append_array_text(out, "a \"b\" \\c");
    CHECK(out == "\"a \\\"b\\\" \\\\c\"");
    out.clear();
    append_array_text(out, std::string("x\0y\xff", 4));
    CHECK(out == "\"xy?\"");
}
