//! A Redis key prefix per test, on the machine's shared Redis.

/// A key prefix of this test's own, whose keys are deleted on drop.
pub struct Prefix {
    url: String,
    pub prefix: String,
}

impl Prefix {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_string(),
            prefix: format!("chronos-test:{}:", uuid::Uuid::new_v4().simple()),
        }
    }

    /// Every key under the prefix.
    pub fn keys(&self) -> Vec<String> {
        let client = redis::Client::open(self.url.as_str()).unwrap();
        let mut conn = client.get_connection().unwrap();
        redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query(&mut conn)
            .unwrap()
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let keys = self.keys();
        if !keys.is_empty() {
            let client = redis::Client::open(self.url.as_str()).unwrap();
            let mut conn = client.get_connection().unwrap();
            let _: () = redis::cmd("DEL").arg(keys).query(&mut conn).unwrap();
        }
    }
}
