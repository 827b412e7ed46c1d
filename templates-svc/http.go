package templatesvc

import (
	"errors"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"herald.dev/platform/auth"
	"herald.dev/platform/httpx"
)

// Mount adds the /templates routes to r, a router already under /v1 and
// behind auth.Middleware.
func (s *Service) Mount(r fiber.Router) {
	r.Get("/templates", s.handleList)
	r.Post("/templates", s.handleCreate)
	r.Get("/templates/:code", s.handleGet)
	r.Put("/templates/:code", s.handleUpdate)
	r.Delete("/templates/:code", s.handleDelete)
	r.Get("/templates/:code/versions", s.handleVersions)
	r.Get("/templates/:code/versions/:n", s.handleVersion)
	r.Post("/templates/:code/preview", s.handlePreview)
}

type page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// pathCode returns the :code parameter (copied: fiber reuses its buffers).
func pathCode(c *fiber.Ctx) (string, error) {
	code := strings.Clone(c.Params("code"))
	if !ValidCode(code) {
		return "", httpx.Invalid("code", codeReason)
	}
	return code, nil
}

func readJSON(c *fiber.Ctx) ([]byte, error) {
	if ct := string(c.Request().Header.ContentType()); ct != "" && !strings.HasPrefix(ct, "application/json") && !strings.Contains(ct, "+json") {
		return nil, httpx.CodeUnsupported.New("content type %q: send application/json", ct)
	}
	return httpx.Body(c)
}

// problem converts the service's errors to HTTP problems.
func problem(err error, code string) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return httpx.NotFound("template", code)
	case errors.Is(err, ErrExists):
		return httpx.CodeConflict.New("template %q already exists: change it with PUT /v1/templates/%s", code, code)
	case errors.Is(err, ErrVersionConflict):
		return httpx.CodeConflict.New("template %q has a newer version than the one you edited: reload it and apply your change again", code)
	}
	return err
}

func (s *Service) handleCreate(c *fiber.Ctx) error {
	raw, err := readJSON(c)
	if err != nil {
		return err
	}
	in, version, err := decodeInput(raw)
	if err != nil {
		return err
	}
	if version != 0 {
		return httpx.Invalid("version", "is assigned by the server: leave it out when creating")
	}
	t, err := s.Create(c.UserContext(), auth.AppID(c), in)
	if err != nil {
		return problem(err, in.Code)
	}
	c.Location("/v1/templates/" + t.Code)
	return c.Status(fiber.StatusCreated).JSON(t)
}

func (s *Service) handleUpdate(c *fiber.Ctx) error {
	code, err := pathCode(c)
	if err != nil {
		return err
	}
	raw, err := readJSON(c)
	if err != nil {
		return err
	}
	in, base, err := decodeInput(raw)
	if err != nil {
		return err
	}
	t, err := s.Update(c.UserContext(), auth.AppID(c), code, in, base)
	if err != nil {
		return problem(err, code)
	}
	return c.JSON(t)
}

func (s *Service) handleGet(c *fiber.Ctx) error {
	code, err := pathCode(c)
	if err != nil {
		return err
	}
	t, err := s.Get(c.UserContext(), auth.AppID(c), code)
	if err != nil {
		return problem(err, code)
	}
	return c.JSON(t)
}

func (s *Service) handleDelete(c *fiber.Ctx) error {
	code, err := pathCode(c)
	if err != nil {
		return err
	}
	if err := s.Delete(c.UserContext(), auth.AppID(c), code); err != nil {
		return problem(err, code)
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func queryLimit(c *fiber.Ctx) (int, error) {
	v := c.Query("limit")
	if v == "" {
		return DefaultPageLimit, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > MaxPageLimit {
		return 0, httpx.Invalid("limit", "must be an integer from 1 to %d", MaxPageLimit)
	}
	return n, nil
}

func (s *Service) handleList(c *fiber.Ctx) error {
	limit, err := queryLimit(c)
	if err != nil {
		return err
	}
	cursor := strings.Clone(c.Query("cursor"))
	if cursor != "" && !ValidCode(cursor) {
		return httpx.Invalid("cursor", "is not a cursor returned by this API")
	}
	f := ListFilter{Category: strings.Clone(c.Query("category"))}
	if f.Category != "" && !validCategory(f.Category) {
		return httpx.Invalid("category", "must be 1-64 characters of letters, digits and _ . : @ -")
	}
	items, next, err := s.List(c.UserContext(), auth.AppID(c), f, limit, cursor)
	if err != nil {
		return err
	}
	return c.JSON(page[Summary]{Items: items, NextCursor: next})
}

func (s *Service) handleVersions(c *fiber.Ctx) error {
	code, err := pathCode(c)
	if err != nil {
		return err
	}
	limit, err := queryLimit(c)
	if err != nil {
		return err
	}
	before := 0
	if v := c.Query("cursor"); v != "" {
		if before, err = strconv.Atoi(v); err != nil || before < 1 {
			return httpx.Invalid("cursor", "is not a cursor returned by this API")
		}
	}
	items, next, err := s.Versions(c.UserContext(), auth.AppID(c), code, limit, before)
	if err != nil {
		return problem(err, code)
	}
	p := page[VersionInfo]{Items: items}
	if next > 0 {
		p.NextCursor = strconv.Itoa(next)
	}
	return c.JSON(p)
}

func (s *Service) handleVersion(c *fiber.Ctx) error {
	code, err := pathCode(c)
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(c.Params("n"))
	if err != nil || n < 1 {
		return httpx.Invalid("version", "must be a positive version number")
	}
	t, err := s.GetVersion(c.UserContext(), auth.AppID(c), code, n)
	if errors.Is(err, ErrNotFound) {
		return httpx.CodeNotFound.New("template %q has no version %d", code, n)
	}
	if err != nil {
		return err
	}
	return c.JSON(t)
}

func (s *Service) handlePreview(c *fiber.Ctx) error {
	code, err := pathCode(c)
	if err != nil {
		return err
	}
	var req PreviewRequest
	if err := httpx.Bind(c, &req); err != nil {
		return err
	}
	res, err := s.Preview(c.UserContext(), auth.AppID(c), code, req)
	if err != nil {
		if errors.Is(err, ErrNotFound) && req.Version > 0 {
			return httpx.CodeNotFound.New("template %q has no version %d", code, req.Version)
		}
		return problem(err, code)
	}
	return c.JSON(res)
}
