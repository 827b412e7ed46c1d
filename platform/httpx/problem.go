// Package httpx holds Herald's HTTP conventions: the error catalogue rendered
// as application/problem+json (RFC 9457), strict JSON binding with
// per-field validation messages, request ids and the fiber error handler.
package httpx

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// Problem is an RFC 9457 problem document. Code is Herald's stable error code.
type Problem struct {
	Type      string         `json:"type"`
	Title     string         `json:"title"`
	Status    int            `json:"status"`
	Code      string         `json:"code"`
	Detail    string         `json:"detail,omitempty"`
	Instance  string         `json:"instance,omitempty"`
	RequestID string         `json:"request_id,omitempty"`
	Errors    []FieldError   `json:"errors,omitempty"`
	Extra     map[string]any `json:"-"`
	// RetryAfter, in seconds, is sent as a Retry-After header when > 0.
	RetryAfter int `json:"-"`
}

// FieldError names one bad field and why.
type FieldError struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

func (p *Problem) Error() string {
	var b strings.Builder
	b.WriteString(p.Code)
	if p.Detail != "" {
		b.WriteString(": ")
		b.WriteString(p.Detail)
	}
	for _, fe := range p.Errors {
		fmt.Fprintf(&b, "; %s: %s", fe.Field, fe.Reason)
	}
	return b.String()
}

// The catalogue: stable codes with their HTTP status and title.
var (
	CodeValidation   = def("validation_failed", http.StatusUnprocessableEntity, "The request has invalid fields")
	CodeMalformed    = def("malformed_request", http.StatusBadRequest, "The request body could not be parsed")
	CodeUnauthorized = def("unauthorized", http.StatusUnauthorized, "Missing or invalid credentials")
	CodeForbidden    = def("forbidden", http.StatusForbidden, "Not allowed")
	CodeNotFound     = def("not_found", http.StatusNotFound, "Not found")
	CodeConflict     = def("conflict", http.StatusConflict, "Conflict")
	CodeTooLarge     = def("payload_too_large", http.StatusRequestEntityTooLarge, "The request body is too large")
	CodeRateLimited  = def("rate_limited", http.StatusTooManyRequests, "Too many requests")
	CodeUnsupported  = def("unsupported_media_type", http.StatusUnsupportedMediaType, "Unsupported media type")
	CodeMethod       = def("method_not_allowed", http.StatusMethodNotAllowed, "Method not allowed")
	CodeUnavailable  = def("unavailable", http.StatusServiceUnavailable, "Service unavailable")
	CodeInternal     = def("internal_error", http.StatusInternalServerError, "Internal server error")
)

// Code is a catalogue entry.
type Code struct {
	Name   string
	Status int
	Title  string
}

func def(name string, status int, title string) Code { return Code{name, status, title} }

// New builds a problem of the given code with a detail message.
func (c Code) New(format string, args ...any) *Problem {
	return &Problem{
		Type:   "https://herald.dev/problems/" + c.Name,
		Title:  c.Title,
		Status: c.Status,
		Code:   c.Name,
		Detail: fmt.Sprintf(format, args...),
	}
}

// Fields builds a problem listing bad fields.
func (c Code) Fields(fes ...FieldError) *Problem {
	p := c.New("")
	p.Errors = fes
	if len(fes) == 1 {
		p.Detail = fes[0].Field + ": " + fes[0].Reason
	} else if len(fes) > 1 {
		p.Detail = fmt.Sprintf("%d fields are invalid", len(fes))
	}
	return p
}

// Invalid is shorthand for a one-field validation problem.
func Invalid(field, reason string, args ...any) *Problem {
	return CodeValidation.Fields(FieldError{Field: field, Reason: fmt.Sprintf(reason, args...)})
}

// NotFound is shorthand for a 404 naming the resource.
func NotFound(what, id string) *Problem {
	return CodeNotFound.New("%s %q not found", what, id)
}

// ErrorHandler renders every error as problem+json. Client mistakes arrive as
// *Problem or *fiber.Error; anything else is logged by the caller's logger and
// answered as a 500 without internals.
func ErrorHandler(logf func(format string, args ...any)) fiber.ErrorHandler {
	return func(c *fiber.Ctx, err error) error {
		p := AsProblem(err)
		if p.Status >= 500 && logf != nil {
			logf("http %s %s: %v", c.Method(), c.Path(), err)
		}
		return Write(c, p)
	}
}

// AsProblem converts any error to a problem.
func AsProblem(err error) *Problem {
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	var fe *fiber.Error
	if errors.As(err, &fe) {
		switch fe.Code {
		case http.StatusNotFound:
			return CodeNotFound.New("%s", fe.Message)
		case http.StatusMethodNotAllowed:
			return CodeMethod.New("%s", fe.Message)
		case http.StatusRequestEntityTooLarge:
			return CodeTooLarge.New("%s", fe.Message)
		case http.StatusUnsupportedMediaType:
			return CodeUnsupported.New("%s", fe.Message)
		case http.StatusBadRequest:
			return CodeMalformed.New("%s", fe.Message)
		case http.StatusUnauthorized:
			return CodeUnauthorized.New("%s", fe.Message)
		case http.StatusTooManyRequests:
			return CodeRateLimited.New("%s", fe.Message)
		}
		if fe.Code < 500 {
			return &Problem{Type: "about:blank", Title: http.StatusText(fe.Code), Status: fe.Code, Code: "http_" + fmt.Sprint(fe.Code), Detail: fe.Message}
		}
	}
	return CodeInternal.New("the server could not complete the request")
}

// Write sends p as application/problem+json.
func Write(c *fiber.Ctx, p *Problem) error {
	if p.Instance == "" {
		p.Instance = c.Path()
	}
	if p.RequestID == "" {
		p.RequestID = RequestID(c)
	}
	if p.RetryAfter > 0 {
		c.Set(fiber.HeaderRetryAfter, fmt.Sprint(p.RetryAfter))
	}
	c.Status(p.Status)
	c.Set(fiber.HeaderContentType, "application/problem+json")
	return c.JSON(p, "application/problem+json")
}
