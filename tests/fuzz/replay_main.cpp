// Runs a fuzz target without libFuzzer: over the files named on the command line, or over
// N pseudo-random inputs (fixed seed) built from bytes that matter to URL parsing.
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <random>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

int main(int argc, char** argv) {
    if (argc > 1 && std::string(argv[1]).find_first_not_of("0123456789") != std::string::npos) {
        for (int i = 1; i < argc; ++i) {
            std::ifstream in(argv[i], std::ios::binary);
            const std::string data{std::istreambuf_iterator<char>(in),
                                   std::istreambuf_iterator<char>()};
            LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(data.data()), data.size());
        }
        std::cout << "replayed " << argc - 1 << " files\n";
        return 0;
    }
    const long runs = argc > 1 ? std::atol(argv[1]) : 10000;
    static const std::string alphabet =
        "/./..//%2F%25%zz%E1%88%B4?&==+ ~*$aZ09\x01\xff\xe1\x88\xb4";
    std::mt19937 rng(12345);
    std::string input;
    for (long i = 0; i < runs; ++i) {
        input.clear();
        const std::size_t len = rng() % 64;
        for (std::size_t k = 0; k < len; ++k) {
            if (rng() % 4 == 0)
                input.push_back(static_cast<char>(rng() % 256));
            else
                input.push_back(alphabet[rng() % alphabet.size()]);
        }
        LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(input.data()), input.size());
    }
    std::cout << "ran " << runs << " generated inputs, no property violated\n";
    return 0;
}
