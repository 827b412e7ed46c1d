package profilesvc

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"net/url"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"herald.dev/platform/auth"
	"herald.dev/platform/contracts"
	"herald.dev/platform/httpx"
)

// Mount registers the profile routes on r, which the binary has placed under
// /v1 behind auth.Middleware.
func (s *Service) Mount(r fiber.Router) {
	r.Post("/users/import", s.handleImport)
	r.Get("/users", s.handleListUsers)
	r.Put("/users/:id", s.handlePutUser)
	r.Get("/users/:id", s.handleGetUser)
	r.Delete("/users/:id", s.handleDeleteUser)
	r.Get("/users/:id/preferences", s.handleGetPreferences)
	r.Put("/users/:id/preferences", s.handlePutPreferences)
	r.Post("/users/:id/unsubscribe", s.handleUnsubscribe)
	r.Delete("/users/:id/unsubscribe/:category", s.handleResubscribe)

	r.Post("/groups", s.handleCreateGroup)
	r.Get("/groups", s.handleListGroups)
	r.Get("/groups/:id", s.handleGetGroup)
	r.Put("/groups/:id", s.handlePutGroup)
	r.Delete("/groups/:id", s.handleDeleteGroup)
	r.Post("/groups/:id/members", s.handleAddMembers)
	r.Get("/groups/:id/members", s.handleListMembers)
	r.Delete("/groups/:id/members/:user_id", s.handleRemoveMember)
}

// Page is a list response; NextCursor is absent on the last page.
type Page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

func param(c *fiber.Ctx, name string) string {
	v := c.Params(name)
	if u, err := url.PathUnescape(v); err == nil {
		return u
	}
	return v
}

// problem maps service errors to client problems; anything else stays a 500.
func problem(err error, kind, id string) error {
	var p *httpx.Problem
	switch {
	case err == nil:
		return nil
	case errors.As(err, &p):
		return p
	case errors.Is(err, contracts.ErrUserNotFound):
		if kind != "user" {
			return httpx.NotFound("user", "")
		}
		return httpx.NotFound("user", id)
	case errors.Is(err, contracts.ErrGroupNotFound):
		if kind != "group" {
			return httpx.NotFound("group", "")
		}
		return httpx.NotFound("group", id)
	case errors.Is(err, ErrGroupExists):
		return httpx.CodeConflict.New("group %q already exists", id)
	case errors.Is(err, ErrGroupHasChildren):
		return httpx.CodeConflict.New("%v", err)
	}
	return err
}

// pageArgs reads ?limit= and ?cursor=.
func pageArgs(c *fiber.Ctx) (int, string, error) {
	limit := DefaultPageLimit
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxPageLimit {
			return 0, "", httpx.Invalid("limit", "must be an integer from 1 to %d", MaxPageLimit)
		}
		limit = n
	}
	after := ""
	if v := c.Query("cursor"); v != "" {
		b, err := base64.RawURLEncoding.DecodeString(v)
		if err != nil || !ValidID(string(b)) {
			return 0, "", httpx.Invalid("cursor", "is not a cursor returned by this list")
		}
		after = string(b)
	}
	return limit, after, nil
}

func cursor(last string) string {
	if last == "" {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(last))
}

func boolQuery(c *fiber.Ctx, name string) (bool, error) {
	switch strings.ToLower(c.Query(name)) {
	case "", "false", "0", "no":
		return false, nil
	case "true", "1", "yes":
		return true, nil
	}
	return false, httpx.Invalid(name, "must be true or false")
}

// ---- users ----

func (s *Service) handlePutUser(c *fiber.Ctx) error {
	id := param(c, "id")
	var in UserInput
	if err := httpx.Bind(c, &in); err != nil {
		return err
	}
	if !ValidID(id) {
		return httpx.Invalid("id", idReason)
	}
	if in.ID != "" && strings.TrimSpace(in.ID) != id {
		return httpx.Invalid("id", "must match the id in the path")
	}
	in.ID = id
	u, created, err := s.PutUser(c.UserContext(), auth.AppID(c), in)
	if err != nil {
		return problem(err, "user", id)
	}
	if created {
		c.Status(fiber.StatusCreated)
	}
	return c.JSON(u)
}

func (s *Service) handleGetUser(c *fiber.Ctx) error {
	id := param(c, "id")
	u, err := s.GetUser(c.UserContext(), auth.AppID(c), id)
	if err != nil {
		return problem(err, "user", id)
	}
	return c.JSON(u)
}

func (s *Service) handleDeleteUser(c *fiber.Ctx) error {
	id := param(c, "id")
	if err := s.DeleteUser(c.UserContext(), auth.AppID(c), id); err != nil {
		return problem(err, "user", id)
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func (s *Service) handleListUsers(c *fiber.Ctx) error {
	limit, after, err := pageArgs(c)
	if err != nil {
		return err
	}
	users, next, err := s.ListUsers(c.UserContext(), auth.AppID(c), limit, after)
	if err != nil {
		return err
	}
	return c.JSON(Page[User]{Items: users, NextCursor: cursor(next)})
}

func (s *Service) handleImport(c *fiber.Ctx) error {
	mt, _, _ := strings.Cut(string(c.Request().Header.ContentType()), ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	var body io.Reader
	if r := c.Context().RequestBodyStream(); r != nil {
		body = r
	} else {
		body = bytes.NewReader(c.Body())
	}
	var res ImportResult
	var err error
	switch mt {
	case "text/csv":
		res, err = s.ImportCSV(c.UserContext(), auth.AppID(c), body)
	case "application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines":
		res, err = s.ImportNDJSON(c.UserContext(), auth.AppID(c), body)
	default:
		return httpx.CodeUnsupported.New("content type %q: send text/csv or application/x-ndjson", mt)
	}
	if err != nil {
		return err
	}
	return c.JSON(res)
}

// ---- preferences ----

func (s *Service) handleGetPreferences(c *fiber.Ctx) error {
	id := param(c, "id")
	p, err := s.GetPreferences(c.UserContext(), auth.AppID(c), id)
	if err != nil {
		return problem(err, "user", id)
	}
	return c.JSON(p)
}

func (s *Service) handlePutPreferences(c *fiber.Ctx) error {
	id := param(c, "id")
	var in Preferences
	if err := httpx.Bind(c, &in); err != nil {
		return err
	}
	p, err := s.PutPreferences(c.UserContext(), auth.AppID(c), id, in)
	if err != nil {
		return problem(err, "user", id)
	}
	return c.JSON(p)
}

type unsubscribeRequest struct {
	Category string `json:"category" validate:"required"`
}

func (s *Service) handleUnsubscribe(c *fiber.Ctx) error {
	id := param(c, "id")
	var in unsubscribeRequest
	if err := httpx.Bind(c, &in); err != nil {
		return err
	}
	if err := s.Unsubscribe(c.UserContext(), auth.AppID(c), id, in.Category); err != nil {
		return problem(err, "user", id)
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func (s *Service) handleResubscribe(c *fiber.Ctx) error {
	id := param(c, "id")
	if err := s.Resubscribe(c.UserContext(), auth.AppID(c), id, param(c, "category")); err != nil {
		return problem(err, "user", id)
	}
	return c.SendStatus(fiber.StatusNoContent)
}

// ---- groups ----

func (s *Service) handleCreateGroup(c *fiber.Ctx) error {
	var in GroupInput
	if err := httpx.Bind(c, &in); err != nil {
		return err
	}
	g, err := s.CreateGroup(c.UserContext(), auth.AppID(c), in)
	if err != nil {
		return problem(err, "group", strings.TrimSpace(in.ID))
	}
	return c.Status(fiber.StatusCreated).JSON(g)
}

func (s *Service) handleGetGroup(c *fiber.Ctx) error {
	id := param(c, "id")
	g, err := s.GetGroup(c.UserContext(), auth.AppID(c), id)
	if err != nil {
		return problem(err, "group", id)
	}
	return c.JSON(g)
}

func (s *Service) handlePutGroup(c *fiber.Ctx) error {
	id := param(c, "id")
	var in GroupInput
	if err := httpx.Bind(c, &in); err != nil {
		return err
	}
	g, err := s.UpdateGroup(c.UserContext(), auth.AppID(c), id, in)
	if err != nil {
		return problem(err, "group", id)
	}
	return c.JSON(g)
}

func (s *Service) handleDeleteGroup(c *fiber.Ctx) error {
	id := param(c, "id")
	if err := s.DeleteGroup(c.UserContext(), auth.AppID(c), id); err != nil {
		return problem(err, "group", id)
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func (s *Service) handleListGroups(c *fiber.Ctx) error {
	limit, after, err := pageArgs(c)
	if err != nil {
		return err
	}
	f := GroupFilter{Kind: c.Query("kind"), Parent: c.Query("parent")}
	if f.Kind != "" && f.Kind != KindGroup && f.Kind != KindModule {
		return httpx.Invalid("kind", "must be one of: group, module")
	}
	if f.TopLevel, err = boolQuery(c, "top_level"); err != nil {
		return err
	}
	if f.TopLevel && f.Parent != "" {
		return httpx.Invalid("top_level", "cannot be combined with parent")
	}
	groups, next, err := s.ListGroups(c.UserContext(), auth.AppID(c), f, limit, after)
	if err != nil {
		return err
	}
	return c.JSON(Page[Group]{Items: groups, NextCursor: cursor(next)})
}

type addMembersRequest struct {
	UserIDs []string `json:"user_ids" validate:"required"`
}

func (s *Service) handleAddMembers(c *fiber.Ctx) error {
	id := param(c, "id")
	var in addMembersRequest
	if err := httpx.Bind(c, &in); err != nil {
		return err
	}
	n, err := s.AddMembers(c.UserContext(), auth.AppID(c), id, in.UserIDs)
	if err != nil {
		return problem(err, "group", id)
	}
	return c.JSON(fiber.Map{"added": n})
}

func (s *Service) handleRemoveMember(c *fiber.Ctx) error {
	id := param(c, "id")
	if err := s.RemoveMember(c.UserContext(), auth.AppID(c), id, param(c, "user_id")); err != nil {
		return problem(err, "group", id)
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func (s *Service) handleListMembers(c *fiber.Ctx) error {
	id := param(c, "id")
	limit, after, err := pageArgs(c)
	if err != nil {
		return err
	}
	nested, err := boolQuery(c, "nested")
	if err != nil {
		return err
	}
	users, next, err := s.ListMembers(c.UserContext(), auth.AppID(c), id, nested, limit, after)
	if err != nil {
		return problem(err, "group", id)
	}
	return c.JSON(Page[User]{Items: users, NextCursor: cursor(next)})
}
