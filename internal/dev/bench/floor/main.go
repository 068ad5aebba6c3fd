// Command floor is the smallest program built from the agent's agreed
// core dependencies, wired as the agent wires them: a chi router serving
// /metrics from an OpenTelemetry meter provider through the Prometheus
// exporter, and the OTLP metric and trace exporters (HTTP and gRPC)
// linked and chosen at start as the agent chooses them, pushing only
// when OTEL_EXPORTER_OTLP_ENDPOINT is set. It checks no mount and has no
// agent code. make bench runs it beside the agent (figure 2b) to show how
// much of the agent's resident memory the dependencies alone take.
package main

import (
	"context"
	"flag"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

func main() {
	port := flag.Int("port", 9910, "TCP port")
	bind := flag.String("bind-address", "", "address to listen on")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	reg := prometheus.NewRegistry()
	prom, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		panic(err)
	}
	opts := []sdkmetric.Option{sdkmetric.WithReader(prom)}
	var tp *sdktrace.TracerProvider
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" {
		var me sdkmetric.Exporter
		var te sdktrace.SpanExporter
		if os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL") == "grpc" {
			me, err = otlpmetricgrpc.New(ctx)
			if err == nil {
				te, err = otlptracegrpc.New(ctx)
			}
		} else {
			me, err = otlpmetrichttp.New(ctx)
			if err == nil {
				te, err = otlptracehttp.New(ctx)
			}
		}
		if err != nil {
			panic(err)
		}
		opts = append(opts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(me)))
		tp = sdktrace.NewTracerProvider(sdktrace.WithBatcher(te))
	}
	mp := sdkmetric.NewMeterProvider(opts...)
	up, err := mp.Meter("floor").Int64Gauge("floor_up")
	if err != nil {
		panic(err)
	}
	up.Record(ctx, 1)

	r := chi.NewRouter()
	r.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	r.Get("/healthz/live", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	srv := &http.Server{Addr: net.JoinHostPort(*bind, strconv.Itoa(*port)), Handler: r}
	go func() { <-ctx.Done(); _ = srv.Shutdown(context.Background()) }()
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		panic(err)
	}
	_ = mp.Shutdown(context.Background())
	if tp != nil {
		_ = tp.Shutdown(context.Background())
	}
}
