package pgfast_test

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/pgfast/pgfast"
)

// Drain after rotating a credential or certificate, or before a planned
// switchover: every connection is replaced, idle ones at once, busy ones
// when next released, and no query fails. A pool made by NewPool drains
// the same way: pgfast.Drain(ctx, pool).
func ExampleDrain() {
	db, err := sql.Open("pgfast", downDSN)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()

	// ... the secret manager rotated the password the BeforeConnect hook
	// reads, or DNS now names the new primary ...
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pgfast.Drain(ctx, db); err != nil {
		// ctx ended first: the error says how many are left; each still
		// goes when next released or checked out.
		fmt.Println(err)
		return
	}
	fmt.Println("every connection replaced")
	// Output:
	// every connection replaced
}
