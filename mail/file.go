package mail

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	netmail "net/mail"
	"os"
	"path/filepath"
	"time"
)

// FileSender writes each message as an RFC 5322 .eml file into a folder:
// the zero-configuration default, so every mail flow can be tried locally
// with nothing else installed.
type FileSender struct {
	dir  string
	from *netmail.Address
}

// NewFileSender creates dir (mode 0700: the files hold live tokens) when it
// does not exist. from is the sender address written in the From header.
func NewFileSender(dir, from string) (*FileSender, error) {
	if dir == "" {
		return nil, fmt.Errorf("mail folder must not be empty")
	}
	addr, err := ParseFrom(from)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("mail folder %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("create mail folder: %w", err)
	}
	return &FileSender{dir: abs, from: addr}, nil
}

// Dir is the absolute path of the folder.
func (f *FileSender) Dir() string { return f.dir }

// String describes the sender for operators.
func (f *FileSender) String() string { return "mail folder " + f.dir }

// Send implements Sender.
func (f *FileSender) Send(ctx context.Context, m Message) error {
	_, err := f.Write(ctx, m)
	return err
}

// Write writes m and returns the file's path. The file appears complete or
// not at all (temporary file, fsync, rename), so a reader watching the
// folder never sees half a message.
func (f *FileSender) Write(ctx context.Context, m Message) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	msg, err := buildMsg(f.from, m)
	if err != nil {
		return "", err
	}
	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	// Time first, so that a listing sorts oldest first.
	name := time.Now().UTC().Format("20060102T150405.000000000Z") + "-" + hex.EncodeToString(suffix[:]) + ".eml"
	tmp, err := os.CreateTemp(f.dir, ".tmp-*.eml") // mode 0600
	if err != nil {
		return "", fmt.Errorf("write mail file: %w", err)
	}
	defer os.Remove(tmp.Name()) //nolint:errcheck // gone after a successful rename
	_, err = msg.WriteTo(tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("write mail file: %w", err)
	}
	path := filepath.Join(f.dir, name)
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("write mail file: %w", err)
	}
	return path, nil
}
