// Package homeassistant publishes Home Assistant MQTT discovery configs for
// a gateway's devices on the local broker, retained, so that Home Assistant
// connected to that broker shows every device and point without setup.
//
// It takes a plain description (Site), not the gateway's configuration:
// the gateway decides what may be shown, this package decides how.
//
//   - A numeric point is a sensor with unit_of_measurement, a device_class
//     from its unit (°C → temperature, kWh → energy, …) and a state_class
//     (measurement; total_increasing for energy counters). A text or
//     labelled point is a sensor without unit. A bool point is a
//     binary_sensor, or a switch when Point.Switch says so: the gateway sets
//     it only for a writable coil whose writes need no signature, since Home
//     Assistant cannot sign a command.
//
//   - A switch sends Lintel's command envelope {"id":…,"value":true|false}
//     to lintel/<gw>/<device>/<point>/set (command_template; the id is new
//     for every command).
//
//   - An event (a serial-line access event, say) is a "last <event>" sensor
//     whose state is the event's time stamp and whose attributes are only
//     the fields listed in Event.Fields. No template reads any other field,
//     so a pseudonymised or dropped field (a card, a name) never reaches
//     Home Assistant through discovery.
//
//   - Every entity is grouped under its Lintel device (manufacturer Lintel,
//     via_device the gateway) and is available only while both the device's
//     $status and the gateway's lintel/<gw>/$status say online
//     (availability_mode all).
//
//   - A state point named by a frame (a serial-line event with point:
//     door_{door}_open) is listed as a Template: its shape is the template
//     with its captures' patterns. Discovery.Observe, called for every
//     reading, announces such a point the first time one arrives, as a
//     sensor or binary_sensor (never a switch) of its device with the same
//     availability. Its config holds nothing from the frame but the point
//     name; the gateway offers no template whose name or value field is
//     pseudonymised, dropped or looks personal. The name must fit the
//     shape, be one valid topic level and a valid object id. At most
//     MaxDynamic (256) such points per device are announced; further ones
//     are counted (Overflow) and logged once, and not remembered.
//
// Discovery.Sync publishes the configs and, for entities a previous Sync
// published that are gone, an empty retained payload, which makes Home
// Assistant remove them. A point Observe announced stays across a Sync
// while a template of its device still fits its name and the site does not
// list it; otherwise it is removed. Clear removes everything, and Observe
// announces nothing until the next Sync.
package homeassistant
