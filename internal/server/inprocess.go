package server

import (
	"bytes"
	"context"
	"io"
	"net/http/httptest"

	"github.com/gofiber/fiber/v2"
)

// inProcessAPI lets the dashboard call Herald's REST API without a network
// hop: requests go straight into the fiber app.
type inProcessAPI struct{ app *fiber.App }

// Do implements dashboard.APIClient.
func (a inProcessAPI) Do(ctx context.Context, method, path, apiKey string, body []byte, contentType string) (int, []byte, error) {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req = req.WithContext(ctx)
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := a.app.Test(req, -1)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}
