// LineReader: lines out of large reads, and next_buffered(), which never reads, so that
// `outbox send` hands on the lines it holds before a read that may wait for input.
#include "catch.hpp"

#include "line_reader.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <string>
#include <string_view>

using outbox::cli::LineReader;

namespace {

// The reader on the read end of a pipe, as standard input would be.
struct PipeInput {
    int fds[2] = {-1, -1};
    PipeInput() { REQUIRE(::pipe2(fds, O_CLOEXEC) == 0); }
    ~PipeInput() {
        for (int fd : fds)
            if (fd >= 0) ::close(fd);
    }
    void write(std::string_view text) {
        REQUIRE(::write(fds[1], text.data(), text.size()) == static_cast<ssize_t>(text.size()));
    }
    void close_writer() {
        ::close(fds[1]);
        fds[1] = -1;
    }
};

}  // namespace

TEST_CASE("line reader: next_buffered gives the lines already read and never reads") {
    PipeInput input;
    const int saved = ::dup(STDIN_FILENO);
    REQUIRE(::dup2(input.fds[0], STDIN_FILENO) == STDIN_FILENO);
    LineReader reader;
    std::string why;
    REQUIRE(reader.open("-", why));
    std::string_view line;

    CHECK(reader.next_buffered(line) == LineReader::Next::must_read);  // nothing read yet
    input.write("first\r\nsecond\n\nhalf");
    REQUIRE(reader.next(line) == LineReader::Next::line);
    CHECK(line == "first");  // the '\r' of a CRLF goes
    REQUIRE(reader.next_buffered(line) == LineReader::Next::line);
    CHECK(line == "second");
    REQUIRE(reader.next_buffered(line) == LineReader::Next::line);
    CHECK(line.empty());
    // "half" has no '\n' yet and the input is open: a read would wait.
    CHECK(reader.next_buffered(line) == LineReader::Next::must_read);

    input.write(" and half\nlast, no newline");
    input.close_writer();
    REQUIRE(reader.next(line) == LineReader::Next::line);
    CHECK(line == "half and half");
    REQUIRE(reader.next(line) == LineReader::Next::line);
    CHECK(line == "last, no newline");
    CHECK(reader.next_buffered(line) == LineReader::Next::end);
    CHECK(reader.next(line) == LineReader::Next::end);

    REQUIRE(::dup2(saved, STDIN_FILENO) == STDIN_FILENO);
    ::close(saved);
}
