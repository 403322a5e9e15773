package pgfast

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// TestScrubErrorLeavesCleanErrorsAlone: an error chain without the secret is
// kept as is; a join that quotes it is rebuilt and keeps its causes.
func TestScrubErrorLeavesCleanErrorsAlone(t *testing.T) {
	inner := &strconv.NumError{Func: "Atoi", Num: "abc", Err: strconv.ErrSyntax}
	plain := fmt.Errorf("bad port: %w", errors.New("no secret"))
	if got := scrubError(plain, []string{"SuperSecret9"}); got != plain {
		t.Errorf("an error without the secret was replaced: %v", got)
	}
	got := scrubError(errors.Join(fmt.Errorf("a SuperSecret9: %w", inner), plain), []string{"SuperSecret9"})
	if where := leaksSecret(got, "SuperSecret9"); where != "" {
		t.Errorf("join: secret in %s", where)
	}
	if !errors.Is(got, strconv.ErrSyntax) || !strings.Contains(got.Error(), "no secret") {
		t.Errorf("join lost its causes: %v", got)
	}
}
