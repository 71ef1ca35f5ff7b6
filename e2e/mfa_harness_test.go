package e2e

// Helpers of the second-factor suite (mfa_*_test.go): RFC 6238 codes
// computed by the test from the secret the server hands out, a per-factor
// record of the time steps already spent, and small helpers for the MFA
// endpoints of API.md part 2 ("Second factors: TOTP and recovery codes").
//
// Time steps. The server's clock is the real one and a code is accepted
// once (an implementation may also refuse any step older than the newest
// one it accepted), so every use of a factor that must succeed takes a
// strictly newer step than the one before: the earliest the window allows
// (now-1), then now, then now+1; a fourth use waits for the next step
// boundary. No code is computed in the last seconds of a step, so the
// server sees the same "now" as the test.

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	// mfaStep is RFC 6238's time step.
	mfaStep = 30 * time.Second
	// mfaGuard: no code is computed this close to the end of a step.
	mfaGuard = 4 * time.Second
)

// mfaBegin is the first call of every TestMFA* test.
func mfaBegin(t *testing.T) {
	t.Helper()
	t.Parallel()
}

// totpCode is the RFC 6238 code (HMAC-SHA1, 6 digits) of key for time step.
func totpCode(key []byte, step int64) string {
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], uint64(step))
	m := hmac.New(sha1.New, key)
	m.Write(msg[:])
	sum := m.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	v := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	return fmt.Sprintf("%06d", v%1000000)
}

// mfaStepNow is the current time step, waiting first if the step ends
// within mfaGuard (so a code for now-1 or now+2 computed here is still
// that when the server checks it).
func mfaStepNow() int64 {
	for {
		now := time.Now()
		into := time.Duration(now.UnixNano() % int64(mfaStep))
		if into < mfaStep-mfaGuard {
			return now.Unix() / int64(mfaStep/time.Second)
		}
		time.Sleep(mfaStep - into + 100*time.Millisecond)
	}
}

// mfaWaitNextStep sleeps until the next time step has begun.
func mfaWaitNextStep(t *testing.T) {
	t.Helper()
	now := time.Now()
	into := time.Duration(now.UnixNano() % int64(mfaStep))
	d := mfaStep - into + 150*time.Millisecond
	t.Logf("waiting %v for the next TOTP time step", d.Round(time.Millisecond))
	time.Sleep(d)
}

// mfaFactor is one TOTP enrolment as the server handed it out.
type mfaFactor struct {
	Secret string // base32 without padding, as the server sent it
	URI    string // otpauth_uri
	Key    []byte // the decoded secret

	mu   sync.Mutex
	last int64 // newest step handed out by next (math.MinInt64: none)
}

// next is a code for a use that must succeed: the earliest step the
// window allows that is newer than every step handed out before (waiting
// for the next step when now+1 is spent). The step counts as spent at
// once, whatever the server answers.
func (f *mfaFactor) next(t *testing.T) string {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for waits := 0; ; waits++ {
		cur := mfaStepNow()
		step := max(cur-1, f.last+1)
		if step <= cur+1 {
			f.last = step
			return totpCode(f.Key, step)
		}
		if waits >= 2 {
			t.Fatalf("no unspent TOTP step after waiting twice (last %d, now %d)", f.last, cur)
		}
		mfaWaitNextStep(t)
	}
}

// lastCode is the code of the newest step handed out by next.
func (f *mfaFactor) lastCode() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return totpCode(f.Key, f.last)
}

// at is the code for the current step plus delta, for uses that must fail
// (it is not recorded as spent). ok is false when that code happens to
// equal the code of a step the window accepts, so a refusal would prove
// nothing.
func (f *mfaFactor) at(delta int64) (code string, ok bool) {
	cur := mfaStepNow()
	code = totpCode(f.Key, cur+delta)
	for s := cur - 1; s <= cur+1; s++ {
		if s != cur+delta && totpCode(f.Key, s) == code {
			return code, false
		}
	}
	return code, true
}

// wrong is a 6-digit code that no step near now produces for this factor.
func (f *mfaFactor) wrong() string {
	cur := mfaStepNow()
	for {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			panic(err)
		}
		code := fmt.Sprintf("%06d", binary.BigEndian.Uint32(b[:])%1000000)
		clash := false
		for s := cur - 3; s <= cur+3; s++ {
			clash = clash || totpCode(f.Key, s) == code
		}
		if !clash {
			return code
		}
	}
}

var mfaBase32RE = regexp.MustCompile(`^[A-Z2-7]{32}$`)

// mfaEnrol starts an enrolment (POST /auth/mfa/totp) for the user of
// access and checks the answer: a 160-bit base32 secret without padding
// and an otpauth URI carrying it, labelled issuer:email.
func mfaEnrol(t *testing.T, s *server, access, email, password string) *mfaFactor {
	t.Helper()
	r := s.do(t, "POST", "/auth/mfa/totp", map[string]any{"current_password": password}, bearer(access))
	if !expect(t, r, http.StatusOK, "") {
		t.FailNow()
	}
	var body struct {
		Secret string `json:"secret"`
		URI    string `json:"otpauth_uri"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatalf("%s: %v", r, err)
	}
	if !mfaBase32RE.MatchString(body.Secret) {
		t.Errorf("%s: secret %q is not 32 base32 characters without padding (160 bits)", r.req, body.Secret)
	}
	key, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(body.Secret)
	if err != nil || len(key) != 20 {
		t.Fatalf("%s: secret %q does not decode as unpadded base32 to 20 bytes (%d bytes, %v)", r.req, body.Secret, len(key), err)
	}
	if cc := r.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("%s: the answer carrying the TOTP secret has Cache-Control %q, want no-store", r.req, cc)
	}
	mfaCheckURI(t, body.URI, body.Secret, email)
	return &mfaFactor{Secret: body.Secret, URI: body.URI, Key: key, last: math.MinInt64}
}

// mfaCheckURI asserts otpauth://totp/<issuer>:<email>?secret=<secret>&issuer=<issuer>.
func mfaCheckURI(t *testing.T, uri, secret, email string) {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil {
		t.Errorf("otpauth_uri %q does not parse: %v", uri, err)
		return
	}
	if u.Scheme != "otpauth" || u.Host != "totp" {
		t.Errorf("otpauth_uri %q: want otpauth://totp/...", uri)
	}
	label := strings.TrimPrefix(u.Path, "/")
	i := strings.LastIndex(label, ":")
	if i <= 0 {
		t.Errorf("otpauth_uri %q: label %q is not <issuer>:<email>", uri, label)
		return
	}
	issuer, acct := label[:i], label[i+1:]
	if !strings.EqualFold(acct, email) {
		t.Errorf("otpauth_uri %q: account %q, want %s", uri, acct, email)
	}
	q := u.Query()
	if q.Get("secret") != secret {
		t.Errorf("otpauth_uri %q: secret parameter %q, want the secret %q", uri, q.Get("secret"), secret)
	}
	if q.Get("issuer") != issuer {
		t.Errorf("otpauth_uri %q: issuer parameter %q differs from the label's issuer %q", uri, q.Get("issuer"), issuer)
	}
	for k, v := range q {
		if len(v) != 1 {
			t.Errorf("otpauth_uri %q: parameter %s given %d times", uri, k, len(v))
		}
	}
	for _, k := range []string{"algorithm", "digits", "period"} {
		if v := q.Get(k); v != "" && !slices.Contains([]string{"SHA1", "6", "30"}, v) {
			t.Errorf("otpauth_uri %q: %s=%s contradicts RFC 6238 with SHA-1, 6 digits, 30 s", uri, k, v)
		}
	}
}

// mfaConfirm confirms the pending enrolment with code and asserts 200 with ten distinct
// recovery codes.
func mfaConfirm(t *testing.T, s *server, access, code string) []string {
	t.Helper()
	r := s.do(t, "POST", "/auth/mfa/totp/confirm", map[string]any{"code": code}, bearer(access))
	if !expect(t, r, http.StatusOK, "") {
		t.FailNow()
	}
	return mfaRecoveryCodes(t, r)
}

// mfaRecoveryCodes reads and checks {"recovery_codes":[10 distinct strings]}.
func mfaRecoveryCodes(t *testing.T, r *resp) []string {
	t.Helper()
	var body struct {
		Codes []string `json:"recovery_codes"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatalf("%s: %v", r, err)
	}
	if len(body.Codes) != 10 {
		t.Errorf("%s: %d recovery codes, want 10", r, len(body.Codes))
	}
	seen := map[string]bool{}
	for _, c := range body.Codes {
		if len(strings.TrimSpace(c)) < 8 {
			t.Errorf("%s: recovery code %q is too short to resist guessing", r.req, c)
		}
		if seen[c] {
			t.Errorf("%s: recovery code %q given twice", r.req, c)
		}
		seen[c] = true
	}
	if len(body.Codes) == 0 {
		t.FailNow()
	}
	if cc := r.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("%s: the answer carrying recovery codes has Cache-Control %q, want no-store", r.req, cc)
	}
	return body.Codes
}

// mfaEnable enrols and confirms TOTP for d's user; it returns the factor
// and the recovery codes.
func mfaEnable(t *testing.T, d *device) (*mfaFactor, []string) {
	t.Helper()
	f := mfaEnrol(t, d.srv, d.Access(), d.email, d.password)
	return f, mfaConfirm(t, d.srv, d.Access(), f.next(t))
}

// mfaCheckRequired asserts the 401 mfa_required problem: an mfa_token, the
// methods totp and recovery_code (no passkey: none is enrolled), and no
// session: no cookie set, no access or refresh token. It returns the
// mfa_token.
func mfaCheckRequired(t *testing.T, r *resp) string {
	t.Helper()
	if !expect(t, r, http.StatusUnauthorized, "mfa_required") {
		return ""
	}
	m := r.JSON()
	tok, _ := m["mfa_token"].(string)
	if tok == "" {
		t.Errorf("%s: no mfa_token string", r)
	}
	methods, ok := m["methods"].([]any)
	if !ok {
		t.Errorf("%s: methods is not an array", r)
	}
	var names []string
	for _, v := range methods {
		n, _ := v.(string)
		names = append(names, n)
	}
	for _, want := range []string{"totp", "recovery_code"} {
		if !slices.Contains(names, want) {
			t.Errorf("%s: methods %v lack %q", r.req, names, want)
		}
	}
	if slices.Contains(names, "passkey") {
		t.Errorf("%s: methods %v name passkey, but the user has none", r.req, names)
	}
	for _, k := range []string{"access_token", "refresh_token", "session_id", "token_type"} {
		if _, ok := m[k]; ok {
			t.Errorf("%s: the mfa_required answer carries %q", r, k)
		}
	}
	if sc := r.Header.Values("Set-Cookie"); len(sc) > 0 {
		t.Errorf("%s: the mfa_required answer sets cookies %q", r.req, sc)
	}
	// The mfa_token is a token: API.md's rule for responses carrying one.
	if cc := r.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("%s: the answer carrying an mfa_token has Cache-Control %q, want no-store", r.req, cc)
	}
	return tok
}

// mfaChallenge signs email in with its password on a new device (body or
// cookie transport) and asserts 401 mfa_required; it returns the device
// (with no session yet) and the mfa_token.
func mfaChallenge(t *testing.T, s *server, email, password string, body bool, opts ...reqOpt) (*device, string) {
	t.Helper()
	d := s.newDevice(body)
	d.email, d.password = email, password
	r := d.do(t, "POST", "/auth/login", d.authBody(email, password, nil), opts...)
	tok := mfaCheckRequired(t, r)
	if tok == "" {
		t.FailNow()
	}
	if d.Access() != "" || d.Refresh() != "" {
		t.Errorf("%s: the device holds tokens before the second factor", r.req)
	}
	return d, tok
}

// mfaVerify posts the second factor from device d in d's transport.
func mfaVerify(t *testing.T, d *device, token, method, code string, opts ...reqOpt) *resp {
	t.Helper()
	body := map[string]any{"mfa_token": token, "method": method, "code": code}
	if d.body {
		body["token_transport"] = "body"
	}
	return d.do(t, "POST", "/auth/mfa/verify", body, opts...)
}

// mfaVerifyOK completes the sign-in and asserts a token response in d's
// transport whose access token has amr exactly wantAMR.
func mfaVerifyOK(t *testing.T, d *device, token, method, code string, wantAMR []string, opts ...reqOpt) *resp {
	t.Helper()
	r := mfaVerify(t, d, token, method, code, opts...)
	if !expect(t, r, http.StatusOK, "") {
		t.FailNow()
	}
	checkTokenResponse(t, r, d.body)
	if got := mailAMR(t, d.Access()); !slices.Equal(got, wantAMR) {
		t.Errorf("%s: access token amr %v, want %v", r.req, got, wantAMR)
	}
	return r
}

// mfaRefused asserts the refusal of a second factor: 401 invalid_code.
func mfaRefused(t *testing.T, r *resp, what string) {
	t.Helper()
	if !expect(t, r, http.StatusUnauthorized, "invalid_code") {
		t.Errorf("  ^ %s", what)
	}
	if m := r.JSON(); m != nil {
		if _, ok := m["access_token"]; ok {
			t.Errorf("%s: a refused second factor carries an access token", what)
		}
	}
	if r.Cookie(refreshCookie) != nil {
		t.Errorf("%s: a refused second factor sets the refresh cookie", what)
	}
}

// mfaState is GET /auth/me's mfa member: totp and the passkey count.
func mfaState(t *testing.T, s *server, access string) (totp bool, passkeys float64) {
	t.Helper()
	r := s.meWith(t, access)
	if !expect(t, r, http.StatusOK, "") {
		return false, -1
	}
	m, ok := r.JSON()["mfa"].(map[string]any)
	if !ok {
		t.Errorf("%s: no mfa object", r)
		return false, -1
	}
	totp, ok = m["totp"].(bool)
	if !ok {
		t.Errorf("%s: mfa.totp is not a boolean", r)
	}
	passkeys, ok = m["passkeys"].(float64)
	if !ok {
		t.Errorf("%s: mfa.passkeys is not a number", r)
	}
	return totp, passkeys
}

// mfaExpectState asserts /auth/me's mfa member is {"totp":totp,"passkeys":0}.
func mfaExpectState(t *testing.T, s *server, access string, totp bool, what string) {
	t.Helper()
	got, pk := mfaState(t, s, access)
	if got != totp || pk != 0 {
		t.Errorf("%s: /auth/me mfa = {totp:%v passkeys:%v}, want {totp:%v passkeys:0}", what, got, pk, totp)
	}
}

// mfaAdminFlag finds user id in GET /admin/users (every page) and returns
// its boolean mfa member; every listed user must carry one.
func mfaAdminFlag(t *testing.T, s *server, adminAccess, id string) bool {
	t.Helper()
	after := ""
	for page := 0; page < 100; page++ {
		q := "/admin/users?limit=100"
		if after != "" {
			q += "&after=" + url.QueryEscape(after)
		}
		r := s.do(t, "GET", q, nil, bearer(adminAccess))
		if !expect(t, r, http.StatusOK, "") {
			t.FailNow()
		}
		var body struct {
			Users []map[string]any `json:"users"`
			Next  *string          `json:"next"`
		}
		if err := json.Unmarshal(r.Body, &body); err != nil {
			t.Fatalf("%s: %v", r, err)
		}
		var found *bool
		for _, u := range body.Users {
			v, ok := u["mfa"].(bool)
			if !ok {
				t.Errorf("%s: user %v has no boolean mfa member", r.req, u["id"])
			}
			if u["id"] == id {
				found = &v
			}
		}
		if found != nil {
			return *found
		}
		if body.Next == nil || *body.Next == "" {
			break
		}
		after = *body.Next
	}
	t.Fatalf("user %s not found in GET /admin/users", id)
	return false
}

// mfaSessionIDs lists the ids of GET /auth/sessions for access.
func mfaSessionIDs(t *testing.T, s *server, access string) []string {
	t.Helper()
	r := s.do(t, "GET", "/auth/sessions", nil, bearer(access))
	if !expect(t, r, http.StatusOK, "") {
		t.FailNow()
	}
	var body struct {
		Sessions []struct {
			ID string `json:"id"`
		} `json:"sessions"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatalf("%s: %v", r, err)
	}
	var ids []string
	for _, s := range body.Sessions {
		ids = append(ids, s.ID)
	}
	slices.Sort(ids)
	return ids
}

// mfaLoginPlain asserts that email signs in with its password alone
// (200, amr [pwd]) and returns the device.
func mfaLoginPlain(t *testing.T, s *server, email, password string, what string) *device {
	t.Helper()
	d := s.newDevice(true)
	d.email, d.password = email, password
	r := d.do(t, "POST", "/auth/login", d.authBody(email, password, nil))
	if !expect(t, r, http.StatusOK, "") {
		t.Errorf("  ^ %s: the password alone should sign in", what)
		t.FailNow()
	}
	checkTokenResponse(t, r, true)
	if got := mailAMR(t, d.Access()); !slices.Equal(got, []string{"pwd"}) {
		t.Errorf("%s: amr %v, want [pwd]", what, got)
	}
	return d
}

// mfaRawVerify posts /auth/mfa/verify without the harness's checks (safe
// from many goroutines); it returns status and problem code.
func mfaRawVerify(s *server, token, method, code string, header map[string]string) (int, string, error) {
	st, pc, _, err := mailRawPost(s, "/auth/mfa/verify",
		map[string]any{"mfa_token": token, "method": method, "code": code, "token_transport": "body"}, header)
	return st, pc, err
}

// TestMFAHarnessTOTP checks the test's RFC 6238 function against the
// RFC's SHA-1 test vectors (the low six digits of the eight-digit values).
func TestMFAHarnessTOTP(t *testing.T) {
	mfaBegin(t)
	key := []byte("12345678901234567890")
	for _, v := range []struct {
		unix int64
		want string
	}{
		{59, "287082"},
		{1111111109, "081804"},
		{1111111111, "050471"},
		{1234567890, "005924"},
		{2000000000, "279037"},
		{20000000000, "353130"},
	} {
		if got := totpCode(key, v.unix/30); got != v.want {
			t.Errorf("T=%d: code %s, want %s", v.unix, got, v.want)
		}
	}
	f := &mfaFactor{Key: key, last: math.MinInt64}
	a, b, c := f.next(t), f.next(t), f.next(t)
	if a == b || b == c || a == c {
		t.Logf("consecutive steps gave equal codes (possible, rare): %s %s %s", a, b, c)
	}
	if w := f.wrong(); w == a || len(w) != 6 {
		t.Errorf("wrong() gave %q", w)
	}
}
