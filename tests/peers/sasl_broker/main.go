// A Kafka broker that enforces SASL PLAIN (or, with -mechanism OAUTHBEARER, Amazon MSK's IAM
// tokens: msk_iam.go) over TLS, for the KafkaDestination and CLI tests:
// a TLS front on 127.0.0.1 that answers ApiVersions, SaslHandshake, SaslAuthenticate and
// InitProducerId itself, checks the PLAIN credentials, and passes Metadata, Produce and
// CreateTopics to Sarama's MockBroker. Every record produced is decoded (CRC-32C checked)
// and appended to --records as a JSON line, so tests read back what the client wrote.
//
// Built in GOPATH mode against Debian's golang-github-shopify-sarama-dev. Prints
// {"port": N} once listening; stops on SIGTERM.
package main

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/Shopify/sarama"
)

const (
	apiProduce          = 0
	apiFetch            = 1
	apiMetadata         = 3
	apiSaslHandshake    = 17
	apiApiVersions      = 18
	apiCreateTopics     = 19
	apiInitProducerId   = 22
	apiSaslAuthenticate = 36

	errUnsupportedVersion       = 35
	errIllegalSaslState         = 34
	errUnsupportedSaslMechanism = 33
	errSaslAuthenticationFailed = 58
)

// The versions this broker speaks: what the front answers and what Sarama 1.22 decodes.
var supported = [][3]int16{
	{apiProduce, 3, 3}, // record batches, needed by the idempotent producer
	{apiFetch, 4, 4},   // never served; librdkafka wants it listed before it writes batches v2
	{apiMetadata, 0, 5},
	{apiSaslHandshake, 0, 1},
	{apiApiVersions, 0, 3},
	{apiCreateTopics, 0, 2},
	{apiInitProducerId, 0, 1},
	{apiSaslAuthenticate, 0, 1},
}

type reporter struct{}

func (reporter) Error(args ...interface{})                 { log.Print(args...) }
func (reporter) Errorf(format string, args ...interface{}) { log.Printf(format, args...) }
func (reporter) Fatal(args ...interface{})                 { log.Fatal(args...) }
func (reporter) Fatalf(format string, args ...interface{}) { log.Fatalf(format, args...) }

type frontConfig struct {
	mechanism      string // PLAIN or OAUTHBEARER (Amazon MSK's IAM tokens)
	user, password string
	msk            mskIam
	backend        string
	records        *recordLog
	refuseDelay    time.Duration // a refusal is answered this late (a handshake in flight)
	authLog        *recordLog    // a line per SaslAuthenticate, written as it arrives
}

type recordLog struct {
	mu   sync.Mutex
	file *os.File
}

func (l *recordLog) write(topic string, partition int32, value []byte, headers [][2]string) {
	if l == nil {
		return
	}
	hs := make([]string, 0, 2*len(headers))
	for _, h := range headers {
		hs = append(hs, h[0], h[1])
	}
	line, _ := json.Marshal(map[string]interface{}{
		"topic": topic, "partition": partition, "value": string(value), "headers": hs})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.file.Write(append(line, '\n'))
}

func readFrame(r io.Reader) ([]byte, error) {
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(size[:])
	if n > 64<<20 {
		return nil, errors.New("frame too large")
	}
	frame := make([]byte, n)
	_, err := io.ReadFull(r, frame)
	return frame, err
}

func writeFrame(w io.Writer, correlation int32, body []byte) error {
	out := make([]byte, 8, 8+len(body))
	binary.BigEndian.PutUint32(out[0:], uint32(4+len(body)))
	binary.BigEndian.PutUint32(out[4:], uint32(correlation))
	_, err := w.Write(append(out, body...))
	return err
}

// A reader over a request body, in Kafka's encodings.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil || n < 0 || n > len(r.b) {
		r.err = errors.New("short request")
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}
func (r *reader) i8() int8   { v := r.take(1); if v == nil { return 0 }; return int8(v[0]) }
func (r *reader) i16() int16 { v := r.take(2); if v == nil { return 0 }; return int16(binary.BigEndian.Uint16(v)) }
func (r *reader) i32() int32 { v := r.take(4); if v == nil { return 0 }; return int32(binary.BigEndian.Uint32(v)) }
func (r *reader) i64() int64 { v := r.take(8); if v == nil { return 0 }; return int64(binary.BigEndian.Uint64(v)) }
func (r *reader) str() string {
	n := r.i16()
	if n < 0 {
		return ""
	}
	return string(r.take(int(n)))
}
func (r *reader) bytes32() []byte {
	n := r.i32()
	if n < 0 {
		return nil
	}
	return r.take(int(n))
}
func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errors.New("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}
func (r *reader) varbytes() []byte {
	n := r.varint()
	if n < 0 {
		return nil
	}
	return r.take(int(n))
}

// A writer of response bodies.
type writer struct{ bytes.Buffer }

func (w *writer) i16(v int16) { binary.Write(&w.Buffer, binary.BigEndian, v) }
func (w *writer) i32(v int32) { binary.Write(&w.Buffer, binary.BigEndian, v) }
func (w *writer) i64(v int64) { binary.Write(&w.Buffer, binary.BigEndian, v) }
func (w *writer) uvarint(v uint64) {
	var b [binary.MaxVarintLen64]byte
	w.Write(b[:binary.PutUvarint(b[:], v)])
}
func (w *writer) str(s string) { w.i16(int16(len(s))); w.WriteString(s) }
func (w *writer) nullableStr(s *string) {
	if s == nil {
		w.i16(-1)
		return
	}
	w.str(*s)
}

func apiVersionsResponse(version int16) []byte {
	var w writer
	w.i16(0)
	if version >= 3 {
		w.uvarint(uint64(len(supported) + 1))
	} else {
		w.i32(int32(len(supported)))
	}
	for _, api := range supported {
		w.i16(api[0])
		w.i16(api[1])
		w.i16(api[2])
		if version >= 3 {
			w.uvarint(0) // tagged fields
		}
	}
	if version >= 1 {
		w.i32(0) // throttle time
	}
	if version >= 3 {
		w.uvarint(0)
	}
	return w.Bytes()
}

// Decodes a Produce v3 request's record batches and logs each record.
func logProduce(body []byte, records *recordLog) error {
	r := &reader{b: body}
	r.str() // transactional id
	r.i16() // acks
	r.i32() // timeout
	for topics := r.i32(); topics > 0 && r.err == nil; topics-- {
		topic := r.str()
		for parts := r.i32(); parts > 0 && r.err == nil; parts-- {
			partition := r.i32()
			batches := &reader{b: r.bytes32()}
			for len(batches.b) > 0 && batches.err == nil {
				batches.i64() // base offset
				batch := &reader{b: batches.take(int(batches.i32()))}
				batch.i32() // partition leader epoch
				if magic := batch.i8(); magic != 2 {
					return fmt.Errorf("record batch magic %d, want 2", magic)
				}
				crc := uint32(batch.i32())
				if crc32.Checksum(batch.b, crc32.MakeTable(crc32.Castagnoli)) != crc {
					return errors.New("record batch CRC-32C mismatch")
				}
				if attributes := batch.i16(); attributes&7 != 0 {
					return errors.New("compressed batches are not decoded here")
				}
				batch.take(4 + 8 + 8 + 8 + 2 + 4) // last offset delta .. base sequence
				for n := batch.i32(); n > 0 && batch.err == nil; n-- {
					rec := &reader{b: batch.take(int(batch.varint()))}
					rec.i8()
					rec.varint() // timestamp delta
					rec.varint() // offset delta
					rec.varbytes()
					value := rec.varbytes()
					var headers [][2]string
					for h := rec.varint(); h > 0 && rec.err == nil; h-- {
						k := rec.varbytes()
						v := rec.varbytes()
						headers = append(headers, [2]string{string(k), string(v)})
					}
					if rec.err != nil {
						return rec.err
					}
					records.write(topic, partition, value, headers)
				}
				if batch.err != nil {
					return batch.err
				}
			}
		}
	}
	return r.err
}

func serve(client net.Conn, cfg frontConfig) {
	defer client.Close()
	authenticated := false
	mechanismChosen := false
	var backend net.Conn
	defer func() {
		if backend != nil {
			backend.Close()
		}
	}()
	for {
		frame, err := readFrame(client)
		if err != nil {
			return
		}
		hdr := &reader{b: frame}
		apiKey, apiVersion, correlation := hdr.i16(), hdr.i16(), hdr.i32()
		if apiKey == apiApiVersions && apiVersion >= 3 {
			hdr.take(int(hdr.varint()) - 1) // compact client id (flexible header v2)
			hdr.varint()                   // tagged fields
		} else {
			hdr.str() // client id
		}
		body := hdr.b
		switch {
		case apiKey == apiApiVersions:
			if apiVersion > 3 {
				var w writer
				w.i16(errUnsupportedVersion)
				w.i32(0)
				writeFrame(client, correlation, w.Bytes())
				continue
			}
			writeFrame(client, correlation, apiVersionsResponse(apiVersion))
		case apiKey == apiSaslHandshake:
			mechanism := (&reader{b: body}).str()
			var w writer
			if mechanism == cfg.mechanism {
				w.i16(0)
				mechanismChosen = true
			} else {
				w.i16(errUnsupportedSaslMechanism)
			}
			w.i32(1)
			w.str(cfg.mechanism)
			writeFrame(client, correlation, w.Bytes())
		case apiKey == apiSaslAuthenticate:
			auth := (&reader{b: body}).bytes32()
			if cfg.authLog != nil {
				cfg.authLog.mu.Lock()
				fmt.Fprintln(cfg.authLog.file, "authenticate")
				cfg.authLog.mu.Unlock()
			}
			parts := bytes.Split(auth, []byte{0})
			var w writer
			var ok bool
			if cfg.mechanism == "OAUTHBEARER" {
				token, err := bearerToken(auth)
				if err == nil {
					err = cfg.msk.verify(token, time.Now())
				}
				if err != nil {
					log.Printf("refused the MSK IAM token: %v", err)
				}
				ok = mechanismChosen && err == nil
				parts = [][]byte{nil, []byte("(token)")}
			} else {
				ok = mechanismChosen && len(parts) == 3 && string(parts[1]) == cfg.user &&
					string(parts[2]) == cfg.password
			}
			if ok {
				w.i16(0)
				w.nullableStr(nil)
			} else {
				msg := "Authentication failed: Invalid username or password"
				w.i16(errSaslAuthenticationFailed)
				w.nullableStr(&msg)
				time.Sleep(cfg.refuseDelay)
			}
			w.i32(0) // no auth bytes back
			if apiVersion >= 1 {
				w.i64(0) // session lifetime
			}
			writeFrame(client, correlation, w.Bytes())
			if !ok {
				log.Printf("refused SASL credentials for user %q", string(parts[min(1, len(parts)-1)]))
				return
			}
			authenticated = true
		case !authenticated:
			var w writer
			w.i16(errIllegalSaslState)
			writeFrame(client, correlation, w.Bytes())
			return
		case apiKey == apiInitProducerId:
			var w writer
			w.i32(0)    // throttle
			w.i16(0)    // error
			w.i64(4242) // producer id
			w.i16(0)    // epoch
			writeFrame(client, correlation, w.Bytes())
		case apiKey == apiMetadata || apiKey == apiProduce || apiKey == apiCreateTopics:
			if apiKey == apiProduce {
				if err := logProduce(body, cfg.records); err != nil {
					log.Printf("produce request: %v", err)
					return
				}
			}
			if backend == nil {
				if backend, err = net.Dial("tcp", cfg.backend); err != nil {
					log.Printf("backend: %v", err)
					return
				}
			}
			var size [4]byte
			binary.BigEndian.PutUint32(size[:], uint32(len(frame)))
			if _, err := backend.Write(append(size[:], frame...)); err != nil {
				return
			}
			reply, err := readFrame(backend)
			if err != nil {
				return
			}
			if _, err := client.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(reply))), reply...)); err != nil {
				return
			}
		default:
			log.Printf("unsupported API key %d v%d: closing", apiKey, apiVersion)
			return
		}
	}
}

func min(a, b int) int {
	if a < b {
		return a
	}
	return b
}

func main() {
	cert := flag.String("cert", "", "server certificate (PEM)")
	key := flag.String("key", "", "server key (PEM)")
	mechanism := flag.String("mechanism", "PLAIN", "PLAIN, or OAUTHBEARER for MSK IAM tokens")
	mskRegion := flag.String("msk-region", "", "OAUTHBEARER: the region the token must be for")
	mskAccessKey := flag.String("msk-access-key", "", "OAUTHBEARER: the key id it must be signed with")
	mskSessionToken := flag.String("msk-session-token", "", "OAUTHBEARER: the session token it must carry")
	user := flag.String("user", "", "the SASL PLAIN user")
	passwordFile := flag.String("password-file", "", "file holding the SASL PLAIN password")
	topic := flag.String("topic", "", "the topic this broker leads (one partition)")
	records := flag.String("records", "", "append every produced record here as JSON lines")
	refuseDelay := flag.Duration("refuse-delay", 0, "answer a refused SaslAuthenticate this late")
	authLog := flag.String("auth-log", "", "append a line here as each SaslAuthenticate arrives")
	flag.Parse()
	log.SetPrefix("sasl_broker: ")
	secret, err := os.ReadFile(*passwordFile)
	if err != nil {
		log.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(*cert, *key)
	if err != nil {
		log.Fatal(err)
	}
	front, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	if err != nil {
		log.Fatal(err)
	}
	port := front.Addr().(*net.TCPAddr).Port

	sarama.Logger = log.New(io.Discard, "", 0)
	backendListener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	broker := sarama.NewMockBrokerListener(reporter{}, 1, backendListener)
	metadata := sarama.NewMockMetadataResponse(reporter{}).
		SetBroker("127.0.0.1:"+strconv.Itoa(port), 1).SetController(1)
	if *topic != "" {
		metadata.SetLeader(*topic, 0, 1)
	}
	broker.SetHandlerByMap(map[string]sarama.MockResponse{
		"MetadataRequest":     metadata,
		"ProduceRequest":      sarama.NewMockProduceResponse(reporter{}).SetVersion(3),
		"CreateTopicsRequest": sarama.NewMockCreateTopicsResponse(reporter{}),
	})

	cfg := frontConfig{mechanism: *mechanism, user: *user,
		password: string(bytes.TrimRight(secret, "\r\n")), backend: backendListener.Addr().String()}
	// OAUTHBEARER: the password file holds the secret key the token must be signed with.
	cfg.msk = mskIam{region: *mskRegion, accessKey: *mskAccessKey, secret: cfg.password,
		sessionToken: *mskSessionToken}
	cfg.refuseDelay = *refuseDelay
	if *authLog != "" {
		f, err := os.OpenFile(*authLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			log.Fatal(err)
		}
		cfg.authLog = &recordLog{file: f}
	}
	if *records != "" {
		f, err := os.OpenFile(*records, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			log.Fatal(err)
		}
		cfg.records = &recordLog{file: f}
	}
	go func() {
		for {
			conn, err := front.Accept()
			if err != nil {
				return
			}
			go serve(conn, cfg)
		}
	}()
	fmt.Printf("{\"port\": %d}\n", port)
	os.Stdout.Sync()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
	front.Close()
	broker.Close()
}
