// Package mail renders, queues and delivers Gatehouse's mail: verification,
// password reset, magic links and email-change notices.
//
// A request never sends mail itself. It renders a Message and hands it to
// an Outbox, which seals it (the body carries a live token) and stores it
// through a gatehouse.MailOutbox; a Worker on every instance claims due
// messages with a lease, sends them through a Sender (SMTP, or .eml files
// in a folder when no SMTP server is configured), deletes them once sent,
// and retries failures with exponential backoff until a bound.
//
// Nothing here logs a body, a link or a token: logs name the message id and
// the recipient's domain only.
package mail

import (
	"context"
	"errors"
	"fmt"
	netmail "net/mail"
	"strings"

	gomail "github.com/wneessen/go-mail"
)

// Message is one rendered mail to a single recipient. From is the sender's
// configuration, not the message's.
type Message struct {
	To      string `json:"to"`
	Subject string `json:"subject"`
	Text    string `json:"text"`           // the text/plain part, always present
	HTML    string `json:"html,omitempty"` // an optional text/html alternative
}

// Sender delivers one message. Implementations must honour ctx's deadline.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// SenderFunc adapts a function to Sender.
type SenderFunc func(ctx context.Context, m Message) error

// Send implements Sender.
func (f SenderFunc) Send(ctx context.Context, m Message) error { return f(ctx, m) }

// ErrInvalidMessage marks a message refused before it reaches a header:
// a malformed recipient, or a subject with control characters.
var ErrInvalidMessage = errors.New("invalid mail message")

// ParseRecipient checks that s is one bare address (user@domain, no display
// name, no line breaks) and returns it. Recipients come from user input, so
// anything that net/mail would read differently from what we write, or that
// could end a header line, is refused rather than cleaned up.
func ParseRecipient(s string) (string, error) {
	if hasControl(s) {
		return "", fmt.Errorf("%w: recipient contains control characters", ErrInvalidMessage)
	}
	a, err := netmail.ParseAddress(s)
	if err != nil {
		return "", fmt.Errorf("%w: recipient is not an address: %v", ErrInvalidMessage, err)
	}
	if a.Name != "" || a.Address != s {
		return "", fmt.Errorf("%w: recipient must be a bare address like user@example.com", ErrInvalidMessage)
	}
	return a.Address, nil
}

// ParseFrom checks a configured sender such as "Gatehouse
// <noreply@example.com>" or a bare address. A display name is allowed here
// because it comes from the operator, not from users.
func ParseFrom(s string) (*netmail.Address, error) {
	if hasControl(s) {
		return nil, errors.New("sender address contains control characters")
	}
	a, err := netmail.ParseAddress(s)
	if err != nil {
		return nil, fmt.Errorf("sender %q is not an address: %v", s, err)
	}
	if hasControl(a.Name) {
		return nil, errors.New("sender name contains control characters")
	}
	return a, nil
}

// validate refuses a message whose header fields could carry anything but
// themselves. go-mail encodes header values too; this is the second wall.
func (m Message) validate() error {
	if _, err := ParseRecipient(m.To); err != nil {
		return err
	}
	if strings.TrimSpace(m.Subject) == "" {
		return fmt.Errorf("%w: empty subject", ErrInvalidMessage)
	}
	if hasControl(m.Subject) {
		return fmt.Errorf("%w: subject contains control characters", ErrInvalidMessage)
	}
	if m.Text == "" {
		return fmt.Errorf("%w: no text part", ErrInvalidMessage)
	}
	return nil
}

// hasControl reports C0 controls (CR and LF among them), DEL and the
// Unicode line and paragraph separators.
func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '\u2028' || r == '\u2029' || (r >= 0x80 && r < 0xa0) {
			return true
		}
	}
	return false
}

// recipientDomain is what logs may say about a recipient.
func recipientDomain(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return ""
}

// buildMsg turns m into a go-mail message from the given sender, after
// validating every field that becomes a header.
func buildMsg(from *netmail.Address, m Message) (*gomail.Msg, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	// No User-Agent header: it would only advertise the library version.
	msg := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	msg.FromMailAddress(from)
	if err := msg.To(m.To); err != nil {
		return nil, fmt.Errorf("%w: recipient: %v", ErrInvalidMessage, err)
	}
	msg.Subject(m.Subject)
	msg.SetDate()
	msg.SetMessageID()
	msg.SetBodyString(gomail.TypeTextPlain, m.Text)
	if m.HTML != "" {
		msg.AddAlternativeString(gomail.TypeTextHTML, m.HTML)
	}
	return msg, nil
}
