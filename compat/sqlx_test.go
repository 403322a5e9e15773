package compat_test

import (
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
)

// sqlx picks its placeholder style from the driver name and knows only the
// raw drivers' names, so pgfast's must be registered once (or wrap pgfast's
// *sql.DB with sqlx.NewDb under a name sqlx knows, see
// TestSqlxNewDbWithKnownName).
func init() {
	sqlx.BindDriver("pgfast", sqlx.DOLLAR)
	sqlx.BindDriver("pgfast-pq", sqlx.DOLLAR)
}

type person struct {
	ID      int64          `db:"id"`
	Name    string         `db:"name"`
	Email   sql.NullString `db:"email"`
	Age     int            `db:"age"`
	Created time.Time      `db:"created"`
}

const personSchema = `CREATE TABLE person (
	id      bigserial PRIMARY KEY,
	name    text NOT NULL UNIQUE,
	email   text,
	age     int NOT NULL,
	created timestamptz NOT NULL DEFAULT now())`

func TestSqlx(t *testing.T) {
	forEachBackend(t, func(t *testing.T, driverName string) {
		ctx := testCtx(t)
		dsn := freshDSN(t)
		// sqlx.Connect = sql.Open + Ping: with pgfast the ping waits for the
		// background connection instead of dialling a second one.
		db, err := sqlx.ConnectContext(ctx, driverName, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if got := db.Rebind("a = ? AND b = ?"); got != "a = $1 AND b = $2" {
			t.Fatalf("Rebind: %q: sqlx does not know %s uses $n placeholders", got, driverName)
		}
		if _, err := db.ExecContext(ctx, personSchema); err != nil {
			t.Fatal(err)
		}

		// Named queries: a struct, then a batch of structs.
		res, err := db.NamedExecContext(ctx, `INSERT INTO person (name, email, age) VALUES (:name, :email, :age)`,
			person{Name: "ada", Email: sql.NullString{String: "ada@example.com", Valid: true}, Age: 36})
		if err != nil {
			t.Fatal(err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			t.Fatalf("RowsAffected = %d, %v", n, err)
		}
		if _, err := db.NamedExecContext(ctx, `INSERT INTO person (name, email, age) VALUES (:name, :email, :age)`,
			[]person{{Name: "brian", Age: 41}, {Name: "grace", Age: 85}}); err != nil {
			t.Fatalf("batch NamedExec: %v", err)
		}

		// Get and Select.
		var p person
		if err := db.GetContext(ctx, &p, `SELECT * FROM person WHERE name = $1`, "ada"); err != nil {
			t.Fatal(err)
		}
		if p.ID == 0 || p.Email.String != "ada@example.com" || p.Age != 36 || time.Since(p.Created) > time.Hour {
			t.Errorf("Get: %+v", p)
		}
		var people []person
		if err := db.SelectContext(ctx, &people, `SELECT * FROM person WHERE age > $1 ORDER BY age`, 40); err != nil {
			t.Fatal(err)
		}
		if len(people) != 2 || people[0].Name != "brian" || people[1].Name != "grace" || people[0].Email.Valid {
			t.Errorf("Select: %+v", people)
		}
		if err := db.GetContext(ctx, &p, `SELECT * FROM person WHERE name = $1`, "nobody"); !errors.Is(err, sql.ErrNoRows) {
			t.Errorf("Get of a missing row: %v, want sql.ErrNoRows", err)
		}

		// NamedQuery with a map, and a prepared named statement.
		rows, err := db.NamedQueryContext(ctx, `SELECT name FROM person WHERE age BETWEEN :lo AND :hi ORDER BY name`,
			map[string]any{"lo": 30, "hi": 50})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				t.Fatal(err)
			}
			names = append(names, n)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		if len(names) != 2 || names[0] != "ada" || names[1] != "brian" {
			t.Errorf("NamedQuery: %v", names)
		}
		stmt, err := db.PrepareNamedContext(ctx, `SELECT count(*) FROM person WHERE age < :age`)
		if err != nil {
			t.Fatal(err)
		}
		defer stmt.Close()
		for age, want := range map[int]int{40: 1, 50: 2, 100: 3} {
			var n int
			if err := stmt.GetContext(ctx, &n, map[string]any{"age": age}); err != nil || n != want {
				t.Errorf("prepared named statement, age %d: %d, %v; want %d", age, n, err, want)
			}
		}

		// sqlx.In expands a slice; Rebind turns ? into $n.
		q, args, err := sqlx.In(`SELECT name FROM person WHERE name IN (?) ORDER BY name`, []string{"ada", "grace", "zed"})
		if err != nil {
			t.Fatal(err)
		}
		names = nil
		if err := db.SelectContext(ctx, &names, db.Rebind(q), args...); err != nil {
			t.Fatal(err)
		}
		if len(names) != 2 || names[0] != "ada" || names[1] != "grace" {
			t.Errorf("In: %v", names)
		}

		// Transactions: a rolled-back one leaves nothing, a committed one stays.
		tx, err := db.BeginTxx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.NamedExecContext(ctx, `INSERT INTO person (name, age) VALUES (:name, :age)`, person{Name: "temp", Age: 1}); err != nil {
			t.Fatal(err)
		}
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		tx, err = db.BeginTxx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE person SET age = age + 1 WHERE name = $1`, "ada"); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		var count, adaAge int
		if err := db.GetContext(ctx, &count, `SELECT count(*) FROM person`); err != nil || count != 3 {
			t.Errorf("after rollback: %d rows, %v; want 3", count, err)
		}
		if err := db.GetContext(ctx, &adaAge, `SELECT age FROM person WHERE name = 'ada'`); err != nil || adaAge != 37 {
			t.Errorf("after commit: age %d, %v; want 37", adaAge, err)
		}
	})
}

// Without registering pgfast's names, wrapping its *sql.DB under a driver
// name sqlx knows works as well.
func TestSqlxNewDbWithKnownName(t *testing.T) {
	forEachBackend(t, func(t *testing.T, driverName string) {
		ctx := testCtx(t)
		raw, _ := openDB(t, driverName)
		db := sqlx.NewDb(raw, "postgres")
		if _, err := db.ExecContext(ctx, personSchema); err != nil {
			t.Fatal(err)
		}
		if _, err := db.NamedExecContext(ctx, `INSERT INTO person (name, age) VALUES (:name, :age)`, person{Name: "ada", Age: 36}); err != nil {
			t.Fatal(err)
		}
		var p person
		if err := db.GetContext(ctx, &p, db.Rebind(`SELECT * FROM person WHERE name = ?`), "ada"); err != nil || p.Age != 36 {
			t.Errorf("Get: %+v, %v", p, err)
		}
	})
}
