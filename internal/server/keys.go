package server

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// secretFromConfigOrFile returns the configured secret, or the one kept in
// dataDir/name, creating it (32 random bytes, base64) on first use. Production
// deployments with several instances set the secret in config so they agree.
func secretFromConfigOrFile(configured, dataDir, name string) ([]byte, error) {
	if configured != "" {
		if b, err := base64.StdEncoding.DecodeString(configured); err == nil && len(b) >= 32 {
			return b[:32], nil
		}
		if len(configured) < 32 {
			return nil, fmt.Errorf("%s: want at least 32 bytes (or base64 of 32 bytes)", name)
		}
		return []byte(configured), nil
	}
	path := filepath.Join(dataDir, name)
	if b, err := os.ReadFile(path); err == nil {
		key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(key) != 32 {
			return nil, fmt.Errorf("%s is corrupt: want base64 of 32 bytes", path)
		}
		return key, nil
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return key, nil
}
