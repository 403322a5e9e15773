package compat_test

import (
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lib/pq"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/pgfast/pgfast"
)

type product struct {
	ID        uint
	Code      string `gorm:"uniqueIndex;not null"`
	Price     int
	Tags      string
	CreatedAt time.Time
	UpdatedAt time.Time
	DeletedAt gorm.DeletedAt `gorm:"index"`
}

// gormOn hands pgfast's *sql.DB to GORM's postgres dialector.
func gormOn(t *testing.T, db *sql.DB, conf gorm.Config) *gorm.DB {
	t.Helper()
	conf.Logger = logger.Discard
	gdb, err := gorm.Open(postgres.New(postgres.Config{Conn: db}), &conf)
	if err != nil {
		t.Fatal(err)
	}
	return gdb
}

func TestGorm(t *testing.T) {
	forEachBackend(t, func(t *testing.T, driverName string) {
		for _, prepare := range []bool{false, true} {
			name := "direct"
			if prepare {
				name = "PrepareStmt"
			}
			t.Run(name, func(t *testing.T) {
				db, _ := openDB(t, driverName)
				gdb := gormOn(t, db, gorm.Config{TranslateError: true, PrepareStmt: prepare}).WithContext(testCtx(t))
				testGormCRUD(t, gdb, driverName)
			})
		}
	})
}

func testGormCRUD(t *testing.T, gdb *gorm.DB, driverName string) {
	if err := gdb.AutoMigrate(&product{}); err != nil {
		t.Fatalf("AutoMigrate: %v", err)
	}
	// A second AutoMigrate reads the schema back through the driver and
	// must find nothing to change. GORM's postgres dialect is written for
	// pgx: with lib/pq this fails the same way without pgfast.
	if err := gdb.AutoMigrate(&product{}); err != nil {
		failUnlessRawFails(t, driverName, err, func(raw *sql.DB) error {
			g := gormOn(t, raw, gorm.Config{})
			if err := g.AutoMigrate(&product{}); err != nil {
				return err
			}
			return g.AutoMigrate(&product{})
		})
	}
	if !gdb.Migrator().HasIndex(&product{}, "Code") {
		t.Error("unique index on code missing")
	}

	p := product{Code: "D42", Price: 100, Tags: "a,b"}
	if err := gdb.Create(&p).Error; err != nil {
		t.Fatal(err)
	}
	if p.ID == 0 || p.CreatedAt.IsZero() {
		t.Fatalf("Create did not fill ID/CreatedAt (RETURNING): %+v", p)
	}
	batch := []product{{Code: "E1", Price: 10}, {Code: "E2", Price: 20}, {Code: "E3", Price: 30}}
	if err := gdb.Create(&batch).Error; err != nil {
		t.Fatal(err)
	}
	for _, b := range batch {
		if b.ID == 0 {
			t.Fatalf("batch Create did not fill IDs: %+v", batch)
		}
	}

	var got product
	if err := gdb.First(&got, "code = ?", "D42").Error; err != nil || got.ID != p.ID || got.Tags != "a,b" {
		t.Fatalf("First: %+v, %v", got, err)
	}
	if err := gdb.Model(&got).Updates(map[string]any{"price": 200, "tags": "c"}).Error; err != nil {
		t.Fatal(err)
	}
	var cheap []product
	if err := gdb.Where("price < ?", 25).Order("price").Find(&cheap).Error; err != nil || len(cheap) != 2 || cheap[1].Code != "E2" {
		t.Fatalf("Find: %+v, %v", cheap, err)
	}
	var total int64
	if err := gdb.Model(&product{}).Select("sum(price)").Scan(&total).Error; err != nil || total != 260 {
		t.Errorf("sum(price) = %d, %v; want 260", total, err)
	}
	if err := gdb.First(&got, "code = ?", "nope").Error; !errors.Is(err, gorm.ErrRecordNotFound) {
		t.Errorf("First of a missing row: %v, want gorm.ErrRecordNotFound", err)
	}

	// A transaction that fails rolls back; one that succeeds commits.
	errBoom := errors.New("boom")
	err := gdb.Transaction(func(tx *gorm.DB) error {
		if err := tx.Create(&product{Code: "T1", Price: 1}).Error; err != nil {
			return err
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("Transaction: %v", err)
	}
	err = gdb.Transaction(func(tx *gorm.DB) error {
		return tx.Model(&product{}).Where("code LIKE ?", "E%").Update("price", gorm.Expr("price * 2")).Error
	})
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	gdb.Model(&product{}).Where("code = ?", "T1").Count(&n)
	if n != 0 {
		t.Error("rolled-back row is there")
	}
	gdb.Model(&product{}).Where("price = ?", 60).Count(&n)
	if n != 1 {
		t.Error("committed update missing")
	}

	// Soft delete, then a hard one.
	if err := gdb.Delete(&product{}, p.ID).Error; err != nil {
		t.Fatal(err)
	}
	gdb.Model(&product{}).Count(&n)
	if n != 3 {
		t.Errorf("after soft delete: %d rows visible, want 3", n)
	}
	gdb.Unscoped().Model(&product{}).Count(&n)
	if n != 4 {
		t.Errorf("after soft delete: %d rows in all, want 4", n)
	}

	// A unique violation: GORM's translation (TranslateError) and, without
	// it, the backend's own error type.
	err = gdb.Create(&product{Code: "E1", Price: 1}).Error
	if !errors.Is(err, gorm.ErrDuplicatedKey) {
		t.Errorf("duplicate key: %v (%T), want gorm.ErrDuplicatedKey", err, err)
	}
	sqlDB, err := gdb.DB()
	if err != nil {
		t.Fatal(err)
	}
	err = gormOn(t, sqlDB, gorm.Config{}).Create(&product{Code: "E1", Price: 1}).Error
	switch driverName {
	case "pgfast":
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
			t.Errorf("duplicate key: %v (%T), want a *pgconn.PgError 23505", err, err)
		}
	case "pgfast-pq":
		var pqErr *pq.Error
		if !errors.As(err, &pqErr) || pqErr.Code != "23505" {
			t.Errorf("duplicate key: %v (%T), want a *pq.Error 23505", err, err)
		}
	}

	// GORM's *sql.DB is pgfast's: its connector is reachable.
	if c := pgfast.ConnectorOf(sqlDB); c == nil || c.State() != pgfast.StateReady {
		t.Errorf("ConnectorOf(gorm's *sql.DB) = %v", c)
	}
}

// rawDriver is the driver each pgfast driver name wraps.
var rawDriver = map[string]string{"pgfast": "pgx", "pgfast-pq": "postgres"}

// failUnlessRawFails is for an operation that failed through pgfast with err:
// it runs the same operation through the raw driver pgfast wraps, on a
// database of its own, and fails the test unless it fails the same way (then
// it is the library's or the raw driver's limitation, not pgfast's).
func failUnlessRawFails(t *testing.T, driverName string, err error, op func(raw *sql.DB) error) {
	t.Helper()
	raw, openErr := sql.Open(rawDriver[driverName], freshDSN(t))
	if openErr != nil {
		t.Fatal(openErr)
	}
	defer raw.Close()
	rawErr := op(raw)
	if rawErr == nil || rawErr.Error() != err.Error() {
		t.Fatalf("through %s: %v\nthrough the raw %s driver: %v", driverName, err, rawDriver[driverName], rawErr)
	}
	t.Logf("known limitation, the same without pgfast (%s): %v", rawDriver[driverName], err)
}

// GORM can also open pgfast itself by driver name.
func TestGormOpensPgfastByName(t *testing.T) {
	forEachBackend(t, func(t *testing.T, driverName string) {
		dsn := freshDSN(t)
		gdb, err := gorm.Open(postgres.New(postgres.Config{DriverName: driverName, DSN: dsn}), &gorm.Config{Logger: logger.Discard})
		if err != nil {
			t.Fatal(err)
		}
		sqlDB, err := gdb.DB()
		if err != nil {
			t.Fatal(err)
		}
		defer sqlDB.Close()
		waitReady(t, sqlDB)
		if pgfast.ConnectorOf(sqlDB) == nil {
			t.Fatal("GORM did not open pgfast")
		}
		ctx := testCtx(t)
		var one int
		if err := gdb.WithContext(ctx).Raw("SELECT 1").Scan(&one).Error; err != nil || one != 1 {
			t.Fatalf("SELECT 1 = %d, %v", one, err)
		}
	})
}
