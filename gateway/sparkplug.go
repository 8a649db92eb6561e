package gateway

import (
	"path/filepath"

	"github.com/lintel-gw/lintel/gateway/config"
	"github.com/lintel-gw/lintel/gateway/uplink/sparkplug"
)

// sparkplugNode builds the Sparkplug B edge node of format sparkplug-b;
// onCommand is the cloud command handler the JSON format subscribes.
func (g *Gateway) sparkplugNode(cfg *config.Config, onCommand func(topic string, payload []byte)) (*sparkplug.Node, error) {
	u := cfg.Uplink
	return sparkplug.New(sparkplug.Config{
		GroupID:          u.Sparkplug.GroupID,
		EdgeNodeID:       u.Sparkplug.EdgeNodeID,
		PrimaryHostID:    u.Sparkplug.PrimaryHostID,
		PrimaryHostState: u.Sparkplug.PrimaryHostState,
		QoS1Data:         u.Sparkplug.QoS1Data,
		GatewayID:        cfg.Gateway.ID,
		TopicPrefix:      u.TopicPrefix,
		Metrics:          SparkplugMetrics(cfg),
		StateFile:        filepath.Join(cfg.Gateway.DataDir, "sparkplug.db"),
		OnCommand:        onCommand,
	}, g.log)
}

// SparkplugMetrics declares every configured point as a metric of its
// device: the datatype follows the value the adapter publishes (labels: a
// String; a scale or offset: a Double).
func SparkplugMetrics(cfg *config.Config) []sparkplug.MetricDef {
	var out []sparkplug.MetricDef
	for _, d := range cfg.Devices {
		for _, p := range d.Points {
			m := sparkplug.MetricDef{Device: d.Name, Name: p.Name, Unit: p.Unit, Type: sparkplug.String}
			if p.Scale != nil {
				m.Scale = *p.Scale
			}
			switch {
			case len(p.Labels) > 0:
			case p.Type == "bool" || p.Bit != nil:
				m.Type = sparkplug.Boolean
			case p.Scale != nil || p.Offset != 0 || p.Type == "float32" || p.Type == "float64" || p.Type == "uint64":
				m.Type = sparkplug.Double
			case p.Type == "int16" || p.Type == "uint16" || p.Type == "int32" || p.Type == "uint32" || p.Type == "int64":
				m.Type = sparkplug.Int64
			}
			out = append(out, m)
		}
	}
	return out
}
