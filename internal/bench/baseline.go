package bench

import (
	"encoding/json"
	"net"

	"github.com/gofiber/fiber/v2"
)

// baselineReq mirrors the shape of a send request, so the baseline decodes
// the same JSON Herald does.
type baselineReq struct {
	Template   string                       `json:"template"`
	Content    map[string]map[string]string `json:"content"`
	Data       map[string]any               `json:"data"`
	Recipients []map[string]string          `json:"recipients"`
	Channels   []string                     `json:"channels"`
	Priority   string                       `json:"priority"`
	Kind       string                       `json:"kind"`
	Category   string                       `json:"category"`
}

// ServeBaseline runs a bare fiber server that decodes the send body and
// answers 202 with nothing else: what HTTP and JSON alone allow on this
// machine, the yardstick for Herald's accept rate.
func ServeBaseline(ln net.Listener) error {
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Post("/v1/notifications", func(c *fiber.Ctx) error {
		var r baselineReq
		if err := json.Unmarshal(c.Body(), &r); err != nil {
			return c.Status(400).SendString(err.Error())
		}
		return c.Status(fiber.StatusAccepted).JSON(fiber.Map{"id": "baseline", "status": "accepted"})
	})
	return app.Listener(ln)
}
