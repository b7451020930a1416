package main

// Amazon MSK's IAM authentication, as the broker side checks it: the OAUTHBEARER token is a
// base64url (unpadded) pre-signed SigV4 URL for GET https://kafka.REGION.amazonaws.com/
// ?Action=kafka-cluster:Connect; this recomputes its signature with the expected key pair
// (an implementation of SigV4 in Go, apart from outbox's C++ one).

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"
)

type mskIam struct {
	region, accessKey, secret, sessionToken string
}

// The token of an OAUTHBEARER client-first message: "n,,\x01auth=Bearer TOKEN\x01\x01".
func bearerToken(message []byte) (string, error) {
	for _, part := range strings.Split(string(message), "\x01") {
		if strings.HasPrefix(part, "auth=Bearer ") {
			return strings.TrimPrefix(part, "auth=Bearer "), nil
		}
	}
	return "", fmt.Errorf("no auth=Bearer in the OAUTHBEARER message")
}

func awsEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func hmacSha256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

func (m mskIam) verify(token string, now time.Time) error {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return fmt.Errorf("token is not base64url without padding: %v", err)
	}
	u, err := url.Parse(string(raw))
	if err != nil {
		return fmt.Errorf("token is not a URL: %v", err)
	}
	host := "kafka." + m.region + ".amazonaws.com"
	if u.Scheme != "https" || u.Host != host || u.Path != "/" {
		return fmt.Errorf("token URL %s://%s%s is not https://%s/", u.Scheme, u.Host, u.Path, host)
	}
	q := u.Query()
	expect := map[string]string{"Action": "kafka-cluster:Connect", "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
		"X-Amz-Expires": "900", "X-Amz-SignedHeaders": "host"}
	for k, v := range expect {
		if q.Get(k) != v {
			return fmt.Errorf("%s is %q, not %q", k, q.Get(k), v)
		}
	}
	if q.Get("X-Amz-Security-Token") != m.sessionToken {
		return fmt.Errorf("session token %q is not the expected one", q.Get("X-Amz-Security-Token"))
	}
	if q.Get("User-Agent") == "" {
		return fmt.Errorf("no User-Agent parameter")
	}
	amzDate := q.Get("X-Amz-Date")
	signedAt, err := time.Parse("20060102T150405Z", amzDate)
	if err != nil {
		return fmt.Errorf("X-Amz-Date %q: %v", amzDate, err)
	}
	if now.Before(signedAt.Add(-5*time.Minute)) || now.After(signedAt.Add(900*time.Second)) {
		return fmt.Errorf("token signed at %s has expired or is from the future", amzDate)
	}
	scope := amzDate[:8] + "/" + m.region + "/kafka-cluster/aws4_request"
	if q.Get("X-Amz-Credential") != m.accessKey+"/"+scope {
		return fmt.Errorf("credential %q is not %q", q.Get("X-Amz-Credential"), m.accessKey+"/"+scope)
	}
	// Everything but the signature and the User-Agent added after signing, in byte order.
	var keys []string
	for k := range q {
		if k != "X-Amz-Signature" && k != "User-Agent" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var pairs []string
	for _, k := range keys {
		pairs = append(pairs, awsEscape(k)+"="+awsEscape(q.Get(k)))
	}
	emptyHash := sha256.Sum256(nil)
	canonical := "GET\n/\n" + strings.Join(pairs, "&") + "\nhost:" + host + "\n\nhost\n" +
		hex.EncodeToString(emptyHash[:])
	digest := sha256.Sum256([]byte(canonical))
	toSign := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(digest[:])
	key := hmacSha256([]byte("AWS4"+m.secret), amzDate[:8])
	key = hmacSha256(key, m.region)
	key = hmacSha256(key, "kafka-cluster")
	key = hmacSha256(key, "aws4_request")
	if want := hex.EncodeToString(hmacSha256(key, toSign)); q.Get("X-Amz-Signature") != want {
		return fmt.Errorf("signature mismatch")
	}
	return nil
}
