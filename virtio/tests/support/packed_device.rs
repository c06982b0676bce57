pub struct PackedDevice;
