package httpx

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"

	"github.com/go-playground/validator/v10"
	"github.com/gofiber/fiber/v2"
)

var (
	validateOnce sync.Once
	validate     *validator.Validate
)

// Validator returns the shared validator; field names in its errors are JSON names.
func Validator() *validator.Validate {
	validateOnce.Do(func() {
		validate = validator.New(validator.WithRequiredStructEnabled())
		validate.RegisterTagNameFunc(func(f reflect.StructField) string {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				return ""
			}
			if name == "" {
				return f.Name
			}
			return name
		})
	})
	return validate
}

// Bind decodes the JSON body into v strictly (unknown fields and trailing
// data are errors) and validates it. Every failure is a *Problem.
func Bind(c *fiber.Ctx, v any) error {
	if ct := string(c.Request().Header.ContentType()); ct != "" && !strings.HasPrefix(ct, "application/json") && !strings.Contains(ct, "+json") {
		return CodeUnsupported.New("content type %q: send application/json", ct)
	}
	body, err := Body(c)
	if err != nil {
		return err
	}
	if err := DecodeJSON(body, v); err != nil {
		return err
	}
	return Validate(v)
}

// DecodeJSON strictly decodes body into v.
func DecodeJSON(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return CodeMalformed.New("the request body is empty: send a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return jsonProblem(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return CodeMalformed.New("unexpected data after the JSON value")
	}
	return nil
}

func jsonProblem(err error) *Problem {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return CodeMalformed.New("malformed JSON at byte %d: %v", se.Offset, se)
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "(body)"
		}
		return CodeValidation.Fields(FieldError{Field: field, Reason: fmt.Sprintf("must be %s, not %s", jsonType(te.Type), te.Value)})
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return CodeValidation.Fields(FieldError{Field: name, Reason: "unknown field"})
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return CodeMalformed.New("malformed JSON: unexpected end of input")
	}
	return CodeMalformed.New("malformed JSON: %v", err)
}

func jsonType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return t.String()
}

// Validate runs struct validation and converts failures to a problem.
func Validate(v any) error {
	err := Validator().Struct(v)
	if err == nil {
		return nil
	}
	var ves validator.ValidationErrors
	if !errors.As(err, &ves) {
		return CodeValidation.New("%v", err)
	}
	fes := make([]FieldError, 0, len(ves))
	for _, fe := range ves {
		fes = append(fes, FieldError{Field: fieldPath(fe.Namespace()), Reason: reason(fe)})
	}
	return CodeValidation.Fields(fes...)
}

// fieldPath drops the struct name: "Req.recipients[0].email" -> "recipients[0].email".
func fieldPath(ns string) string {
	if _, rest, ok := strings.Cut(ns, "."); ok {
		return rest
	}
	return ns
}

func reason(fe validator.FieldError) string {
	switch fe.Tag() {
	case "required", "required_without", "required_without_all", "required_with":
		return "is required"
	case "email":
		return "must be a valid email address"
	case "e164":
		return "must be an E.164 phone number such as +8613800138000"
	case "url", "http_url":
		return "must be a valid URL"
	case "oneof":
		return "must be one of: " + strings.ReplaceAll(fe.Param(), " ", ", ")
	case "max":
		if fe.Kind() == reflect.String {
			return "must be at most " + fe.Param() + " characters"
		}
		return "must have at most " + fe.Param() + " items"
	case "min":
		if fe.Kind() == reflect.String {
			return "must be at least " + fe.Param() + " characters"
		}
		return "must have at least " + fe.Param() + " items"
	case "timezone":
		return "must be an IANA time zone such as Asia/Shanghai"
	case "bcp47_language_tag":
		return "must be a language tag such as zh-CN"
	case "alphanum", "alphanumunicode":
		return "must contain only letters and digits"
	case "hostname_port":
		return "must be host:port"
	case "excluded_with", "excluded_with_all":
		return "cannot be combined with " + fe.Param()
	case "gte", "lte", "gt", "lt":
		return fmt.Sprintf("must be %s %s", map[string]string{"gte": ">=", "lte": "<=", "gt": ">", "lt": "<"}[fe.Tag()], fe.Param())
	case "dive":
		return "is invalid"
	}
	if fe.Param() != "" {
		return fmt.Sprintf("failed %s=%s", fe.Tag(), fe.Param())
	}
	return "failed " + fe.Tag()
}
