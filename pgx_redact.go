package pgfast

import (
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// pgconn.ParseConfigError keeps the DSN whole in ConnString (and its Error
// redacts it only best effort). pgfast rebuilds it, with the public
// constructor, so that errors.As still finds it: ConnString becomes the DSN
// with every spelling of the password replaced.
func init() {
	backendErrorKinds = append(backendErrorKinds, backendErrorKind{
		reason: func(err error) (string, bool) {
			pe, ok := err.(*pgconn.ParseConfigError)
			if !ok {
				return "", false
			}
			msg := parseConfigMsg(pe)
			if cause := errors.Unwrap(pe); cause != nil {
				return msg + " (" + cause.Error() + ")", true
			}
			return msg, true
		},
		scrub: func(err error, secrets []string, cause error) (error, bool) {
			pe, ok := err.(*pgconn.ParseConfigError)
			if !ok {
				return nil, false
			}
			msg := redactAll(parseConfigMsg(pe), secrets)
			return pgconn.NewParseConfigError(redactAll(pe.ConnString, secrets), msg, cause), true
		},
	})
}

// parseConfigMsg returns what pgconn says is wrong, without the DSN and the
// cause: the text its Error puts between them. The prefix is what Error
// writes for the same DSN and no message, so pgx's own redaction of the DSN
// is matched whatever it does.
func parseConfigMsg(pe *pgconn.ParseConfigError) string {
	prefix := pgconn.NewParseConfigError(pe.ConnString, "", nil).Error()
	msg, ok := strings.CutPrefix(pe.Error(), prefix)
	if !ok {
		return "invalid connection string"
	}
	if cause := errors.Unwrap(pe); cause != nil {
		msg = strings.TrimSuffix(msg, " ("+cause.Error()+")")
	}
	return msg
}
