from conan import ConanFile
from conan.tools.cmake import CMake, CMakeDeps, CMakeToolchain, cmake_layout
from conan.tools.files import copy


class OutboxConan(ConanFile):
    name = "outbox"
    version = "0.1.0"
    license = "Apache-2.0"
    description = "Deliver events to Amazon SQS and Kafka, large payloads staged in S3"
    topics = ("aws", "sqs", "kafka", "s3", "sigv4", "asio")
    settings = "os", "compiler", "build_type", "arch"
    options = {"shared": [True, False], "fPIC": [True, False], "tools": [True, False],
               "with_kafka": [True, False], "with_postgresql": [True, False]}
    default_options = {"shared": False, "fPIC": True, "tools": False, "with_kafka": True,
                       "with_postgresql": True}
    exports_sources = "CMakeLists.txt", "LICENSE", "cmake/*", "include/*", "src/*", "tools/*"

    def config_options(self):
        if self.settings.os == "Windows":
            del self.options.fPIC

    def requirements(self):
        # The same set that tests/install proves with Debian's packages.
        self.requires("boost/[>=1.81 <2]", transitive_headers=True)  # Asio, Beast, URL
        self.requires("openssl/[>=3.0 <4]")
        self.requires("simdjson/[>=3.0 <4]")  # SQS replies, credentials documents
        self.requires("sqlite3/[>=3.31 <4]")  # the durable outbox's embedded store
        if self.options.with_kafka:
            self.requires("librdkafka/[>=2.0 <3]")
        if self.options.with_postgresql:
            self.requires("libpq/[>=14 <18]")  # pipeline mode

    def layout(self):
        cmake_layout(self)

    def generate(self):
        CMakeDeps(self).generate()
        tc = CMakeToolchain(self)
        tc.cache_variables["OUTBOX_BUILD_TESTS"] = False
        tc.cache_variables["OUTBOX_BUILD_BENCHMARKS"] = False
        tc.cache_variables["OUTBOX_BUILD_EXAMPLES"] = False
        tc.cache_variables["OUTBOX_BUILD_TOOLS"] = bool(self.options.tools)
        tc.cache_variables["OUTBOX_WITH_KAFKA"] = bool(self.options.with_kafka)
        tc.cache_variables["OUTBOX_WITH_POSTGRESQL"] = bool(self.options.with_postgresql)
        tc.generate()

    def build(self):
        cmake = CMake(self)
        cmake.configure()
        cmake.build()

    def package(self):
        copy(self, "LICENSE", self.source_folder, f"{self.package_folder}/licenses")
        CMake(self).install()

    def package_info(self):
        self.cpp_info.set_property("cmake_file_name", "outbox")
        core = self.cpp_info.components["core"]
        core.set_property("cmake_target_name", "outbox::outbox")
        core.libs = ["outbox"]
        core.requires = ["boost::headers", "boost::url", "openssl::ssl", "openssl::crypto",
                         "simdjson::simdjson", "sqlite3::sqlite3"]
        if self.options.with_kafka:
            kafka = self.cpp_info.components["kafka"]
            kafka.set_property("cmake_target_name", "outbox::kafka")
            kafka.libs = ["outbox_kafka"]
            kafka.requires = ["core", "librdkafka::rdkafka"]
        if self.options.with_postgresql:
            postgresql = self.cpp_info.components["postgresql"]
            postgresql.set_property("cmake_target_name", "outbox::postgresql")
            postgresql.libs = ["outbox_postgresql"]
            postgresql.requires = ["core", "libpq::pq"]
